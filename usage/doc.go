// Package usage counts what every principal moves through keepproxy and
// enforces access keys' limits, as metering plug-ins:
//
//   - Counter (a metering.Accountant) adds each finished transfer to
//     per-(principal, storage, hour) counters in memory and to per-storage
//     Prometheus series (never per key: keys are unbounded).
//   - Flusher writes the counters to the state database every interval
//     and at shutdown, as additive upserts tagged with the proxy's flush
//     sequence, so a flush retried after an ambiguous commit counts once.
//   - Heartbeats records this proxy as alive and learns how many are.
//   - Limits (a metering.Admitter) refuses a key's request beyond its
//     max_concurrent_requests (429 + Retry-After, never queued) and gives
//     its transfers the key's shared rate limiters, each key's cap divided
//     by the number of live proxies.
package usage
