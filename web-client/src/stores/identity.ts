/**
 * Who the console is: the access token (from the URL fragment, `localStorage` or the prompt; see
 * `../auth.ts`), `#rc=` of the URL, and what `GET /api/me` answered (name, role). The console store
 * decides when to ask and what to stop; this holds the facts.
 */
import { computed, ref } from 'vue'
import { resolveToken, saveToken, setToken, type TokenSource } from '../auth'
import { canManage, type Me } from '../roles'
import { storage } from '../session/storage'

export function createIdentity() {
  const initial = resolveToken({ location, history, storage: storage() })
  setToken(initial.token)
  const token = ref<string | null>(initial.token)
  const tokenSource = ref<TokenSource | null>(initial.source)
  /** `#rc=` of the URL: the assigned remote control to use. */
  const rcFromUrl = ref<string | null>(initial.rc)
  const me = ref<Me | null>(null)
  /** The server's message when it refused the token (401); the token prompt shows it. */
  const authError = ref<string | null>(null)

  const role = computed(() => me.value?.role ?? null)
  const manages = computed(() => canManage(role.value))
  const tokenPrompt = computed(() => authError.value !== null || (!token.value && !me.value))

  /** Hold `t` (null: none) from `source`, for every request from now on, and forget who we were. */
  function hold(t: string | null, source: TokenSource | null) {
    setToken(t)
    saveToken(storage(), t)
    token.value = t
    tokenSource.value = source
    authError.value = null
    me.value = null
  }

  /** The fragment again (a console URL pasted into this tab). */
  function reread() {
    return resolveToken({ location, history, storage: storage() })
  }

  return { token, tokenSource, rcFromUrl, me, authError, role, manages, tokenPrompt, hold, reread }
}
