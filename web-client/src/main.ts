import { createApp } from 'vue'
import { createPinia } from 'pinia'
import App from './App.vue'
import { useConsole } from './stores/console'
import type { Action } from './wire/control'
import './style.css'

const app = createApp(App)
app.use(createPinia())
app.mount('#app')

const store = useConsole()
store.start()

// A console URL pasted into this tab (only the fragment changed): take its token and `rc`.
window.addEventListener('hashchange', () => store.readFragment())

// Test hooks for the end-to-end driver (e2e/console.mjs): a fresh plain snapshot on every read, and
// a way to send a command past the UI (the server must refuse what the UI disables).
declare global {
  interface Window {
    __railcast: ReturnType<typeof store.testHook>
    __railcastSend: (action: Action) => string
    /** The video wall's cells (`WallView.vue`), while the wall shows. */
    __railcastWall?: unknown
  }
}
Object.defineProperty(window, '__railcast', { get: () => store.testHook(), configurable: true })
window.__railcastSend = (action) => store.send(action).request_id
