// Vite 8 needs no configuration for meshdrop (dev server and build).
export default {};
