package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
)

// testKey returns member id's signing key in tests: derived from id, so
// that every test and every run gives a member the same key.
func testKey(id string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("lamportledger test key " + id))
	return ed25519.NewKeyFromSeed(seed[:])
}

// testPubKeys returns the public test keys of ids.
func testPubKeys(ids ...string) map[string]ed25519.PublicKey {
	keys := make(map[string]ed25519.PublicKey, len(ids))
	for _, id := range ids {
		keys[id] = testKey(id).Public().(ed25519.PublicKey)
	}
	return keys
}

// nextSealed is Chain.Next, sealed with the test key of t.From.
func nextSealed(c *Chain, t Transfer, clock uint64) (Block, error) {
	b, err := c.Next(t, clock)
	if err != nil {
		return Block{}, err
	}
	return b.Seal(testKey(t.From)), nil
}
