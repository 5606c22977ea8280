// Real networks for the end-to-end tests, built from Linux network namespaces (root
// only): a "public" network 203.0.113.0/24 on a bridge, where meshdrop-signal and
// coturn run; two homes (192.0.2.0/24 and 198.51.100.0/24), each behind its own NAT
// namespace whose rules make it full-cone, symmetric, or UDP-blocking; and Chromium
// launched inside a home. Only documentation address ranges are used, every namespace
// is created and deleted here (also when a test fails or the process is interrupted),
// and every process started is stopped by its pid.
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, writeFileSync, chmodSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS, ROOT, SERVER_BIN } from "./helpers.mjs";

export const PUBLIC = "203.0.113.1";
const RUNNER = "203.0.113.254";
const HOMES = {
  a: { wan: "203.0.113.10", lan: "192.0.2.1", host: "192.0.2.2" },
  b: { wan: "203.0.113.20", lan: "198.51.100.1", host: "198.51.100.2" },
};

export const isRoot = () => process.getuid?.() === 0;

function sh(args, input) {
  return execFileSync(args[0], args.slice(1), { input, stdio: ["pipe", "pipe", "pipe"] }).toString();
}

/** NAT rules by kind: masquerade that keeps ports plus unsolicited UDP to the home host
 *  ("full cone": plain masquerade alone lets conntrack break hole punching), plain
 *  masquerade ("restricted": only replies to what the host sent get in), random ports
 *  per destination ("symmetric"), or symmetric with every UDP packet dropped. */
function natRules(kind, host, wan) {
  const masquerade = kind === "full-cone" || kind === "restricted" ? "masquerade" : "masquerade random";
  let rules = `table ip nat {
  chain postrouting { type nat hook postrouting priority srcnat; oifname "wan" ${masquerade}; }
`;
  if (kind === "full-cone") rules += `  chain prerouting { type nat hook prerouting priority dstnat; iifname "wan" ip daddr ${wan} meta l4proto udp dnat to ${host}; }\n`;
  rules += "}\n";
  if (kind === "udp-blocked") rules += `table inet filter {\n  chain forward { type filter hook forward priority 0; iifname "lan" meta l4proto udp drop; }\n}\n`;
  return rules;
}

/** Namespaces this process creates, the processes it starts in them, and their
 *  teardown (also when a test fails or the process is interrupted). The public
 *  network is a bridge in namespace "pub" at PUBLIC, reached by the test runner too. */
class Namespaces {
  constructor() {
    this.id = `md${process.pid % 100000}${Math.floor(Math.random() * 1000)}`;
    this.namespaces = [];
    this.links = [];
    this.processes = [];
    this.dir = mkdtempSync(path.join(tmpdir(), "meshdrop-nat-"));
    this.cleanup = () => this.destroy();
  }

  ns(name) {
    return `${this.id}-${name}`;
  }

  exec(ns, ...args) {
    return sh(["ip", "netns", "exec", this.ns(ns), ...args]);
  }

  /** Creates the namespaces (loopback up, no IPv6) and the public bridge. */
  create(names) {
    process.once("exit", this.cleanup);
    for (const signal of ["SIGINT", "SIGTERM"]) process.once(signal, () => (this.destroy(), process.exit(130)));
    for (const name of ["pub", ...names]) {
      sh(["ip", "netns", "add", this.ns(name)]);
      this.namespaces.push(this.ns(name));
      this.exec(name, "ip", "link", "set", "lo", "up");
      this.exec(name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1");
    }
    this.exec("pub", "ip", "link", "add", "br0", "type", "bridge");
    this.exec("pub", "ip", "addr", "add", `${PUBLIC}/24`, "dev", "br0");
    this.exec("pub", "ip", "link", "set", "br0", "up");
    // The test runner reaches the public network too (health checks, logs).
    const runner = `${this.id}r`;
    sh(["ip", "link", "add", runner, "type", "veth", "peer", "name", "r0", "netns", this.ns("pub")]);
    this.links.push(runner);
    sh(["ip", "addr", "add", `${RUNNER}/24`, "dev", runner]);
    sh(["ip", "link", "set", runner, "up"]);
    this.exec("pub", "ip", "link", "set", "r0", "master", "br0", "up");
  }

  /** A veth from the public bridge (`bridgeSide`, in "pub") to `ns` (named `inside`). */
  plug(ns, bridgeSide, inside) {
    sh(["ip", "link", "add", bridgeSide, "netns", this.ns("pub"), "type", "veth", "peer", "name", inside, "netns", this.ns(ns)]);
    this.exec("pub", "ip", "link", "set", bridgeSide, "master", "br0", "up");
  }

  /** Limits what leaves `dev` in `ns` to `rate` (e.g. "32mbit") with `tc`. */
  limitDevice(ns, dev, rate) {
    this.exec(ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", "64kb", "latency", "400ms");
  }

  /** Starts a process in `ns`; it is killed at teardown. */
  spawn(ns, args, name) {
    const child = spawn("ip", ["netns", "exec", this.ns(ns), ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    child.stdout.on("data", (d) => (log += d));
    child.stderr.on("data", (d) => (log += d));
    const entry = { child, name, log: () => log, exited: once(child, "exit") };
    this.processes.push(entry);
    return entry;
  }

  /** meshdrop-signal on the public network; resolves once /healthz answers. */
  async signal(port, args = []) {
    const server = this.spawn("pub", [SERVER_BIN, "--listen", `${PUBLIC}:${port}`, "--www", path.join(ROOT, "www"), ...args], "meshdrop-signal");
    const url = `http://${PUBLIC}:${port}`;
    for (let i = 0; i < 200; i++) {
      if (server.child.exitCode !== null) throw new Error(`meshdrop-signal exited: ${server.log()}`);
      try {
        if ((await fetch(`${url}/healthz`)).ok) return { ...server, url, ws: `ws://${PUBLIC}:${port}/ws` };
      } catch {
        /* not yet */
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`meshdrop-signal did not start: ${server.log()}`);
  }

  /** Chromium inside namespace `ns`, treating the public page as a secure context.
   *  `args`: more flags. */
  async chromium(ns, origin, args = []) {
    const wrapper = path.join(this.dir, `chromium-${ns}`);
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${this.ns(ns)} ${process.env.CHROMIUM_BIN ?? "/usr/bin/chromium"} "$@"\n`);
    chmodSync(wrapper, 0o755);
    const browser = await chromium.launch({ executablePath: wrapper, headless: true, args: [...CHROMIUM_ARGS, `--unsafely-treat-insecure-origin-as-secure=${origin}`, ...args] });
    this.processes.push({ name: `chromium-${ns}`, close: () => browser.close() });
    return browser;
  }

  destroy() {
    process.removeListener("exit", this.cleanup);
    for (const p of this.processes.splice(0).reverse()) {
      try {
        if (p.close) p.close().catch(() => {});
        else if (p.child.exitCode === null) p.child.kill("SIGKILL");
      } catch {
        /* gone */
      }
    }
    for (const link of this.links.splice(0)) {
      try {
        sh(["ip", "link", "del", link]);
      } catch {
        /* gone with its namespace */
      }
    }
    for (const ns of this.namespaces.splice(0)) {
      try {
        sh(["ip", "netns", "del", ns]);
      } catch {
        /* already gone */
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Two homes, each behind its own NAT, on the public network. */
export class Topology extends Namespaces {
  /** `nat`: { a: kind, b: kind }. */
  constructor(nat) {
    super();
    this.nat = nat;
    this.homes = structuredClone(HOMES); // renumbering changes them
  }

  up() {
    this.create(["nat-a", "home-a", "nat-b", "home-b"]);
    for (const side of ["a", "b"]) {
      const home = this.homes[side];
      const nat = `nat-${side}`;
      const homeNs = `home-${side}`;
      this.plug(nat, `p${side}`, "wan");
      this.exec(nat, "ip", "addr", "add", `${home.wan}/24`, "dev", "wan");
      this.exec(nat, "ip", "link", "set", "wan", "up");
      sh(["ip", "link", "add", "lan", "netns", this.ns(nat), "type", "veth", "peer", "name", "eth0", "netns", this.ns(homeNs)]);
      this.exec(nat, "ip", "addr", "add", `${home.lan}/24`, "dev", "lan");
      this.exec(nat, "ip", "link", "set", "lan", "up");
      this.exec(nat, "sysctl", "-qw", "net.ipv4.ip_forward=1");
      this.exec(homeNs, "ip", "addr", "add", `${home.host}/24`, "dev", "eth0");
      this.exec(homeNs, "ip", "link", "set", "eth0", "up");
      this.exec(homeNs, "ip", "route", "add", "default", "via", home.lan);
      sh(["ip", "netns", "exec", this.ns(nat), "nft", "-f", "-"], natRules(this.nat[side], home.host, home.wan));
    }
    return this;
  }

  /** The NAT of `side` moves to another public address (its mappings go with the old). */
  renumber(side, address) {
    const home = this.homes[side];
    // Old first: deleting a primary address takes its secondaries with it.
    this.exec(`nat-${side}`, "ip", "addr", "del", `${home.wan}/24`, "dev", "wan");
    this.exec(`nat-${side}`, "ip", "addr", "add", `${address}/24`, "dev", "wan");
    home.wan = address;
    this.exec(`nat-${side}`, "nft", "flush", "ruleset");
    sh(["ip", "netns", "exec", this.ns(`nat-${side}`), "nft", "-f", "-"], natRules(this.nat[side], home.host, address));
    // Nobody on the public network remembers where the old address was.
    for (const ns of ["pub", "nat-a", "nat-b"]) this.exec(ns, "ip", "neigh", "flush", "all");
  }

  /** The host in home `side` moves to another address (as on joining another network):
   *  the sockets bound to the old one stop working. */
  renumberHost(side, address) {
    const home = this.homes[side];
    this.exec(`home-${side}`, "ip", "addr", "del", `${home.host}/24`, "dev", "eth0");
    this.exec(`home-${side}`, "ip", "addr", "add", `${address}/24`, "dev", "eth0");
    this.exec(`home-${side}`, "ip", "route", "add", "default", "via", home.lan);
    home.host = address;
    this.exec(`nat-${side}`, "nft", "flush", "ruleset");
    sh(["ip", "netns", "exec", this.ns(`nat-${side}`), "nft", "-f", "-"], natRules(this.nat[side], address, home.wan));
  }

  /** Limits `side`'s NAT uplink to `rate` (e.g. "4mbit") with `tc`. */
  limit(side, rate) {
    this.limitDevice(`nat-${side}`, "wan", rate);
  }

  /** coturn on the public network, with meshdrop's shipped configuration. */
  async turn(secret) {
    const turn = this.spawn(
      "pub",
      [
        "turnserver",
        "-c", path.join(ROOT, "deploy/turnserver.conf"),
        `--listening-ip=${PUBLIC}`,
        `--relay-ip=${PUBLIC}`,
        `--external-ip=${PUBLIC}`,
        `--static-auth-secret=${secret}`,
        "--log-file=stdout",
        "--no-tls",
        "--no-dtls",
        `--pidfile=${path.join(this.dir, "turnserver.pid")}`,
      ],
      "turnserver",
    );
    for (let i = 0; i < 100; i++) {
      if (/listener opened on/i.test(turn.log()) || /Total General servers/i.test(turn.log())) break;
      if (turn.child.exitCode !== null) throw new Error(`turnserver exited: ${turn.log()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return turn;
  }

  /** Chromium inside home `side`, treating the public page as a secure context. */
  browser(side, origin) {
    return this.chromium(`home-${side}`, origin);
  }
}

/** Hosts directly on the public network (no NAT), each with its own rate limits: for
 *  measuring what several senders give one receiver over links slower than loopback. */
export class Lan extends Namespaces {
  /** `hosts`: { name: { up?: rate, down?: rate } } (tc rates such as "32mbit"). */
  constructor(hosts) {
    super();
    this.hosts = hosts;
  }

  up() {
    const names = Object.keys(this.hosts);
    this.create(names);
    names.forEach((name, i) => {
      const { up, down } = this.hosts[name];
      const bridgeSide = `h${i}`;
      this.plug(name, bridgeSide, "eth0");
      this.exec(name, "ip", "addr", "add", `203.0.113.${10 + i}/24`, "dev", "eth0");
      this.exec(name, "ip", "link", "set", "eth0", "up");
      // Chromium gathers candidates only on the interface of the default route.
      this.exec(name, "ip", "route", "add", "default", "via", PUBLIC);
      if (up) this.limitDevice(name, "eth0", up); // what the host sends
      if (down) this.limitDevice("pub", bridgeSide, down); // what the bridge sends it
    });
    return this;
  }
}

