// Package auditlog is the control plane's audit trail: every event (who did
// what to which Cal, and why) as JSON Lines in rotated segment files, each
// line carrying the hash of the line before it, so that an edited, removed
// or reordered line breaks the chain at a named place.
//
// A directory holds segments named audit-<first sequence number, 20
// digits>.jsonl, 0600. A line is the JSON of an api.AuditRecord: the event's
// fields, "prev" (the previous line's hash) and, last, "hash":
//
//	hash = hex(SHA-256("calnet-audit-v1\n" || the line with "hash":""))
//
// The first line of a network's trail has prev = hex(SHA-256("calnet-audit-
// v1 genesis\n" || network ID)). Sequence numbers continue across restarts
// and segments. A hash chain alone is no defence against someone who
// rewrites the file and every hash after an edit: the control plane
// therefore appends the head (sequence number and hash) to the signed
// ledger from time to time and at shutdown (Anchor), and Verify checks the
// trail against those anchors, so cutting or rewriting it back past an
// anchor is found.
//
// Appends never wait for the disk: Append assigns the sequence number and
// hash and queues the line; one writer goroutine writes and fsyncs whatever
// has queued since its last fsync (group commit). Sync waits until what was
// appended so far is durable.
package auditlog
