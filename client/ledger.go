package client

import (
	"github.com/soulfra/calnet/identity"
	"github.com/soulfra/calnet/ledger"
	"github.com/soulfra/calnet/ledger/tiles"
)

// LedgerURL is the network's public ledger as a C2SP tlog-tiles log, on
// the API this client points at (no credential needed).
func (c *Client) LedgerURL() string { return c.base + "/ledger" }

// Ledger returns a reader of the network's public ledger that verifies
// every checkpoint with the log's origin and key (network.json's origin
// and log_key) and the witness policy (Required cosignatures from
// Witnesses; the zero policy requires none), and every tile and entry
// against a verified checkpoint. chainproof.Export takes it to build an
// offline chain proof.
func (c *Client) Ledger(origin string, logKey *identity.PublicKey, witnesses ledger.WitnessPolicy) (*tiles.Client, error) {
	return tiles.NewClient(tiles.ClientConfig{URL: c.LedgerURL(), Origin: origin, LogKey: logKey, Witnesses: witnesses, HTTPClient: c.http})
}
