package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConcurrentSpendAndUse has many clients spend from a few wallets and
// race to use the same items, over HTTP on loopback, against the durable
// store when one is available. No wallet may go negative, every item must
// be used exactly once, and no request may fail with a 500.
func TestConcurrentSpendAndUse(t *testing.T) {
	const (
		clients    = 32
		perClient  = 25
		items      = 12
		startFunds = 100
	)
	env := newTestEnv(t, envOptions{data: loadTestData(t)})
	admin := env.newAuthority("admin")
	users := []string{"alice", "bob", "carol"}
	for _, u := range users {
		require.Equal(t, http.StatusOK, admin.createEntry(u, startFunds, "seed", nil).status)
	}
	var itemIDs []string
	for i := range items {
		r := admin.createEntry(users[i%len(users)], 0, "grant", map[string]any{"name": fmt.Sprintf("item-%d", i), "data": []int{i}})
		require.Equal(t, http.StatusOK, r.status)
		itemIDs = append(itemIDs, requireEntry(t, r.body["entry"], true)["entry_id"].(string))
	}
	// A few authorities, shared by the clients.
	auths := []*sdkClient{admin, env.newAuthority("shop"), env.newAuthority("arcade")}

	type result struct {
		spent    map[string]int64 // accepted spends by user
		uses     map[string]int   // 200s by item
		statuses map[int]int
		err      error // the first request that got no answer
	}
	results := make([]result, clients)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Only the try calls here: this is not the test's goroutine.
			c := auths[i%len(auths)]
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			res := result{spent: map[string]int64{}, uses: map[string]int{}, statuses: map[int]int{}}
			defer func() { results[i] = res }()
			// Every client tries every item once, in its own order, so
			// that each item is raced for by all clients.
			order := rng.Perm(items)
			for n := range perClient {
				if n < items {
					id := itemIDs[order[n]]
					r, err := c.tryUseItem(id)
					if err != nil {
						res.err = err
						return
					}
					res.statuses[r.status]++
					if r.status == http.StatusOK {
						res.uses[id]++
					}
					continue
				}
				u := users[rng.IntN(len(users))]
				amount := -int64(1 + rng.IntN(9))
				r, err := c.tryCreateEntry(u, amount, "spend", nil)
				if err != nil {
					res.err = err
					return
				}
				res.statuses[r.status]++
				if r.status == http.StatusOK {
					res.spent[u] += -amount
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	spent := map[string]int64{}
	uses := map[string]int{}
	statuses := map[int]int{}
	for i, res := range results {
		require.NoError(t, res.err, "client %d", i)
		for u, v := range res.spent {
			spent[u] += v
		}
		for id, n := range res.uses {
			uses[id] += n
		}
		for s, n := range res.statuses {
			statuses[s] += n
		}
	}
	t.Logf("%d requests in %v: %v", clients*perClient, elapsed, statuses)

	// Only 200, 402 (spends) and 409 (uses of a used item).
	for s := range statuses {
		assert.Contains(t, []int{http.StatusOK, http.StatusPaymentRequired, http.StatusConflict}, s, "status %d seen", s)
	}
	assert.Positive(t, statuses[http.StatusPaymentRequired], "the load overdraws: some spends must be refused")
	for _, id := range itemIDs {
		assert.Equal(t, 1, uses[id], "item %s used %d times", id, uses[id])
	}
	assert.Equal(t, items*(clients-1), statuses[http.StatusConflict])

	wallets := requireWallets(t, admin.getWallets(nil, nil))
	for _, u := range users {
		assert.GreaterOrEqual(t, wallets[u], int64(0), "wallet of %s", u)
		assert.Equal(t, startFunds-spent[u], wallets[u], "wallet of %s is its seed minus the accepted spends", u)
	}
	inv := requireInventory(t, admin.getInventory(nil, nil, nil, ptr(false)))
	assert.Empty(t, inv, "every item is used")
	inv = requireInventory(t, admin.getInventory(nil, nil, nil, ptr(true)))
	assert.Len(t, inv, items)
	require.NoError(t, env.srv.ledger.Verify(t.Context()))
}
