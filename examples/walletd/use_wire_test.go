package main

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestUseAnswerUnchanged: the ledger now records who used an item and
// when, but walletd's v1 answers are the original service's, byte for
// byte: an item is {name, used, data?}, nothing more. The use answer is
// the create answer with "used" flipped, and so is the inventory line.
func TestUseAnswerUnchanged(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("shop")
	created := c.do(http.MethodPost, "/entry", nil, []byte(`{"user_id": "u", "amount": 0, "reason": "r", "item": {"name": "Soda", "data": {"a": [1, 2]}}}`))
	require.Equal(t, http.StatusOK, created.status, "body %s", created.raw)
	id := requireEntry(t, created.body["entry"], true)["entry_id"].(string)
	before := c.getInventory([]string{id}, nil, nil, nil)

	used := c.useItem(id)
	require.Equal(t, http.StatusOK, used.status, "body %s", used.raw)
	require.Equal(t, string(bytes.Replace(created.raw, []byte(`"used":false`), []byte(`"used":true`), 1)), string(used.raw))
	after := c.getInventory([]string{id}, nil, nil, ptr(true))
	require.Equal(t, string(bytes.Replace(before.raw, []byte(`"used":false`), []byte(`"used":true`), 1)), string(after.raw))
	require.NotContains(t, string(used.raw)+string(after.raw), "used_on")
	require.NotContains(t, string(used.raw)+string(after.raw), "used_by")
}
