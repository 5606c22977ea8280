export * from "./meshdrop.js";
export { default, initSync } from "./meshdrop.js";
