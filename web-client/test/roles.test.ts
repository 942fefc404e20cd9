// What each role may do in the console (the server enforces the same rules).
import { describe, expect, it } from 'vitest'
import type { RemoteControlView } from '../src/api'
import { canCommand, canManage, chooseRemoteControl, commandBlockReason, describeCommandError, noAssignmentMessage, parseMe } from '../src/roles'

const rc = (id: string, train_id: string | null = null): RemoteControlView => ({ id, name: id, train_id, created_at: '2024-01-01T00:00:00Z', sessions: [] })

describe('roles', () => {
  it('parses /api/me; an unknown role gets the least rights', () => {
    expect(parseMe({ name: 'demo-admin', role: 'admin' })).toEqual({ name: 'demo-admin', role: 'admin' })
    expect(parseMe({ name: 'x', role: 'root' })).toEqual({ name: 'x', role: 'viewer' })
    expect(parseMe(null)).toEqual({ name: 'unknown', role: 'viewer' })
  })

  it('only admins manage; admins and operators command', () => {
    expect([canManage('admin'), canManage('operator'), canManage('viewer'), canManage(null)]).toEqual([true, false, false, false])
    expect([canCommand('admin'), canCommand('operator'), canCommand('viewer'), canCommand(null)]).toEqual([true, true, false, false])
  })
})

describe('chooseRemoteControl: #rc= if listed, else the stored one if listed, else the first', () => {
  const list = [rc('rc-1', 't1'), rc('rc-2', 't2'), rc('rc-3')]

  it('the URL wins', () => {
    expect(chooseRemoteControl(list, 'rc-2', 'rc-3')).toEqual({ id: 'rc-2', problem: null })
  })
  it('the stored one when the URL names none', () => {
    expect(chooseRemoteControl(list, null, 'rc-3')).toEqual({ id: 'rc-3', problem: null })
  })
  it('the first when the stored one is gone', () => {
    expect(chooseRemoteControl(list, null, 'rc-gone')).toEqual({ id: 'rc-1', problem: null })
  })
  it('a URL naming a remote control not assigned to us: said, and the next rule picks', () => {
    expect(chooseRemoteControl(list, 'rc-x', 'rc-3')).toEqual({ id: 'rc-3', problem: 'remote control rc-x (from the URL) is not assigned to you' })
    expect(chooseRemoteControl(list, 'rc-x', null).id).toBe('rc-1')
  })
  it('none listed: none', () => {
    expect(chooseRemoteControl([], 'rc-1', 'rc-1')).toEqual({ id: null, problem: null })
    expect(noAssignmentMessage('demo-operator')).toBe('no remote control is assigned to demo-operator yet')
  })
})

describe('command buttons', () => {
  const ready = { connected: true, trainId: 't1', online: true }
  it('a viewer never commands, whatever the link', () => {
    expect(commandBlockReason({ role: 'viewer', ...ready })).toMatch(/viewer role may watch but not command/)
  })
  it('operators and admins command a mapped online train', () => {
    expect(commandBlockReason({ role: 'operator', ...ready })).toBeNull()
    expect(commandBlockReason({ role: 'admin', ...ready })).toBeNull()
    expect(commandBlockReason({ role: 'operator', ...ready, connected: false })).toBe('not connected to the server')
    expect(commandBlockReason({ role: 'operator', ...ready, online: false })).toBe('train t1 is offline')
  })
  it('no train: an admin picks one, an operator waits for an admin', () => {
    expect(commandBlockReason({ role: 'admin', ...ready, trainId: null })).toMatch(/pick one/)
    expect(commandBlockReason({ role: 'operator', ...ready, trainId: null })).toMatch(/an admin maps this console to a train/)
  })
  it('command_error codes read clearly', () => {
    expect(describeCommandError('forbidden', 'viewers may not command')).toBe('forbidden: this token may not command this train — viewers may not command')
    expect(describeCommandError('rate_limited', '')).toBe('rate_limited: too many commands: slow down')
    expect(describeCommandError('train_offline', 'gone')).toBe('train_offline — gone')
    expect(commandBlockReason({ role: null, connected: false, trainId: null, online: false })).toBe('not signed in')
  })
})
