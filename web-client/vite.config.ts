// Vite builds the console into dist/, which the railcast server serves at `/`. In development
// (`npm run dev`, `npm run preview`) Vite proxies /api, /ws and /rpc to a running server instead:
// RAILCAST_SERVER, default http://127.0.0.1:8080.
import { defineConfig } from 'vitest/config'
import vue from '@vitejs/plugin-vue'

const target = process.env.RAILCAST_SERVER ?? 'http://127.0.0.1:8080'
const proxy = {
  '/api': { target, changeOrigin: false },
  '/ws': { target, ws: true, changeOrigin: false },
  '/rpc': { target, ws: true, changeOrigin: false },
}

export default defineConfig({
  plugins: [vue()],
  // Relative asset URLs: the bundle works wherever the server mounts it.
  base: './',
  build: { outDir: 'dist', target: 'es2022', sourcemap: true },
  server: { host: '127.0.0.1', proxy },
  preview: { host: '127.0.0.1', proxy },
  test: { include: ['test/**/*.test.ts'], environment: 'node' },
})
