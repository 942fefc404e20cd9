import { createApp } from 'vue'
import { createPinia } from 'pinia'
import App from './App.vue'
import { useConsole } from './stores/console'
import './style.css'

const app = createApp(App)
app.use(createPinia())
app.mount('#app')

const store = useConsole()
store.start()

// Test hook for the end-to-end driver (e2e/console.mjs): a fresh plain snapshot on every read.
declare global {
  interface Window {
    __railcast: ReturnType<typeof store.testHook>
  }
}
Object.defineProperty(window, '__railcast', { get: () => store.testHook(), configurable: true })
