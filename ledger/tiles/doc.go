// Package tiles serves a calnet ledger over HTTP as a C2SP tlog-tiles log
// (https://c2sp.org/tlog-tiles) and reads one back, verifying what it
// reads: the signed checkpoint at <prefix>/checkpoint, hash tiles at
// <prefix>/tile/<L>/<N>[.p/<W>] and entry bundles at
// <prefix>/tile/entries/<N>[.p/<W>].
//
// The tile arithmetic and proof checking are golang.org/x/mod/sumdb/tlog's;
// tile paths are parsed with filippo.io/torchwood. A Client verifies every
// tile it reads against a checkpoint it verified (log key and, if asked,
// witness cosignatures), so a server that alters a tile, an entry or a
// checkpoint is caught, not trusted.
package tiles
