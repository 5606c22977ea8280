// Prints a free TCP port on 127.0.0.1 (for test servers).
import net from "node:net";
const srv = net.createServer().listen(0, "127.0.0.1", () => {
  console.log(srv.address().port);
  srv.close();
});
