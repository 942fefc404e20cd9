/**
 * The railcast wire format, version 1, in TypeScript: sans-IO decoders and the frame assembler,
 * checked against the same golden vectors as the Rust crate (`protocol/tests/vectors/`).
 *
 * - `packet`: video packets (one chunk of one encoded frame), and the split of a data-channel
 *   message into its packets (§2.6).
 * - `assembler`: rebuilds frames from packets, drops incomplete and late frames, waits for a keyframe.
 * - `control`: the train's control frames (golden vectors; `Action` is shared with commands).
 * - `client`: JSON messages between this console and the server.
 * - `seq`: wrap-aware frame sequence numbers.
 */
export * from './common'
export * from './seq'
export * from './packet'
export * from './assembler'
export * from './control'
export * from './client'
