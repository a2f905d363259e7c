package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// listEnv is a walletd that reads lists in pages of 3 rows, with ten
// users u00 to u09, created in reverse order so that user order and entry
// order differ: u0i has total i+1 and one item, and the items of u00, u04
// and u08 are used.
func listEnv(t *testing.T) (*testEnv, *faultyStore, *sdkClient) {
	t.Helper()
	store := newFaultyStore()
	env := newTestEnv(t, envOptions{store: store, pageSize: 3})
	c := env.newAuthority("a")
	for i := 9; i >= 0; i-- {
		r := c.createEntry(fmt.Sprintf("u%02d", i), int64(i+1), "r", map[string]any{"name": fmt.Sprint("item ", i), "data": []int{i}})
		require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
		if i%4 == 0 {
			require.Equal(t, http.StatusOK, c.useItem(requireEntry(t, r.body["entry"], true)["entry_id"].(string)).status)
		}
	}
	return env, store, c
}

// wantList is the body of a list answer holding rows, written at once.
func wantList[T any](t *testing.T, name string, rows []T, add func([]byte, *T) ([]byte, error)) string {
	t.Helper()
	b := []byte(`{"` + name + `":[`)
	for i := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		b, err = add(b, &rows[i])
		require.NoError(t, err)
	}
	return string(b) + "]}\n"
}

// TestListsArePaged: GET /wallet and GET /entry/inventory read the ledger
// a page at a time, and answer every row, in order, exactly once, with the
// bytes of the list written at once.
func TestListsArePaged(t *testing.T) {
	env, store, c := listEnv(t)
	ctx := context.Background()
	wallets := func(q ledger.WalletQuery) string {
		ws, err := env.srv.ledger.Wallets(ctx, q)
		require.NoError(t, err)
		return wantList(t, "wallets", ws, appendWallet)
	}
	inventory := func(q ledger.InventoryQuery) string {
		items, err := env.srv.ledger.Inventory(ctx, q)
		require.NoError(t, err)
		return wantList(t, "inventory", items, appendInventoryItem)
	}
	users := func(n int) []string {
		var us []string
		for i := range n {
			us = append(us, fmt.Sprintf("u%02d", i))
		}
		return us
	}

	for _, tc := range []struct {
		name  string
		get   func() resp
		want  string
		rows  int
		pages int64 // store reads
	}{
		{"wallets", func() resp { return c.getWallets(nil, nil) },
			wallets(ledger.WalletQuery{}), 10, 4},
		{"wallets of two full pages", func() resp { return c.getWallets(users(6), nil) },
			wallets(ledger.WalletQuery{UserIDs: users(6)}), 6, 3},
		{"wallets of named users, some unknown", func() resp { return c.getWallets(append(users(10), "zz1", "zz2"), nil) },
			wallets(ledger.WalletQuery{UserIDs: append(users(10), "zz1", "zz2")}), 12, 5},
		{"wallets in one page", func() resp { return c.getWallets(users(2), nil) },
			wallets(ledger.WalletQuery{UserIDs: users(2)}), 2, 1},
		{"inventory", func() resp { return c.getInventory(nil, nil, nil, nil) },
			inventory(ledger.InventoryQuery{Used: ledger.UsedOrUnused}), 10, 4},
		{"unused items", func() resp { return c.getInventory(nil, nil, nil, ptr(false)) },
			inventory(ledger.InventoryQuery{Used: ledger.UnusedOnly}), 7, 3},
		{"used items", func() resp { return c.getInventory(nil, nil, nil, ptr(true)) },
			inventory(ledger.InventoryQuery{Used: ledger.UsedOnly}), 3, 2},
		{"items of some users", func() resp { return c.getInventory(nil, users(5), nil, nil) },
			inventory(ledger.InventoryQuery{UserIDs: users(5), Used: ledger.UsedOrUnused}), 5, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := store.views.Load()
			r := tc.get()
			pages := store.views.Load() - before
			require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
			assert.Equal(t, tc.want, string(r.raw))
			assert.Equal(t, tc.rows, strings.Count(string(r.raw), `"user_id"`), "rows")
			assert.Equal(t, tc.pages, pages, "pages read from the store")
			if tc.pages == 1 {
				assert.NotEmpty(t, r.header.Get("Content-Length"), "a list of one page has a length")
			}
			assert.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"))
		})
	}
	// The walk through above: no row twice, none missing.
	inv := requireInventory(t, c.getInventory(nil, nil, nil, nil))
	seen := map[string]bool{}
	for _, it := range inv {
		assert.False(t, seen[it["entry_id"].(string)], "entry %s twice", it["entry_id"])
		seen[it["entry_id"].(string)] = true
	}
	assert.Len(t, seen, 10)
	assert.Len(t, requireWallets(t, c.getWallets(nil, nil)), 10)
}

// TestListAbortedMidway: when the ledger fails after the first page of a
// list has gone out, the response is cut off, so that the client sees a
// truncated body, never a complete-looking list; the failure is logged and
// the server keeps serving.
func TestListAbortedMidway(t *testing.T) {
	env, store, c := listEnv(t)
	for _, tc := range []struct{ path, start string }{
		{"/wallet?user_ids=&authority_ids=", `{"wallets":[{"user_id":"u00","total":1},`},
		{"/entry/inventory?entry_ids=&user_ids=&authority_ids=", `{"inventory":[{"entry_id":`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			store.failViewsFrom.Store(store.views.Load() + 2) // the second page fails
			defer store.failViewsFrom.Store(0)
			req, err := http.NewRequest(http.MethodGet, c.apiURL+tc.path, nil)
			require.NoError(t, err)
			req.Header.Set("Authorization", c.token)
			res, err := c.hc.Do(req)
			require.NoError(t, err)
			defer res.Body.Close()
			assert.Equal(t, http.StatusOK, res.StatusCode, "the status went out with the first page")
			body, err := io.ReadAll(res.Body)
			assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "the body is cut off: %s", body)
			assert.True(t, strings.HasPrefix(string(body), tc.start), "the first page arrived: %s", body)
			assert.Equal(t, 3, strings.Count(string(body), `"user_id"`), "rows: the first page's: %s", body)
		})
	}
	logs := env.logs.String()
	assert.Contains(t, logs, "response aborted")
	assert.Contains(t, logs, errInjected.Error())
	assert.Contains(t, logs, "outcome=aborted")
	assert.Len(t, requireWallets(t, c.getWallets(nil, nil)), 10, "still serving")
}

// TestListPagingParameters (issue 10, item 13): limit and after page a
// list; the pages, put together, are the whole list, and a page is
// answered in the bytes of a list of its rows.
func TestListPagingParameters(t *testing.T) {
	env, _, c := listEnv(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name, path string
		total      int
		want       func(after string, limit int) string
		key        string
	}{
		{"wallets", "/wallet?user_ids=&authority_ids=", 10, func(after string, limit int) string {
			ws, err := env.srv.ledger.Wallets(ctx, ledger.WalletQuery{After: after, Limit: limit})
			require.NoError(t, err)
			return wantList(t, "wallets", ws, appendWallet)
		}, "user_id"},
		{"inventory", "/entry/inventory?entry_ids=&user_ids=&authority_ids=", 10, func(after string, limit int) string {
			items, err := env.srv.ledger.Inventory(ctx, ledger.InventoryQuery{After: after, Limit: limit, Used: ledger.UsedOrUnused})
			require.NoError(t, err)
			return wantList(t, "inventory", items, appendInventoryItem)
		}, "entry_id"},
	} {
		for _, limit := range []int{1, 3, 4, 10, 25} { // under, at and over the server's page of 3
			t.Run(fmt.Sprintf("%s limit %d", tc.name, limit), func(t *testing.T) {
				after, seen := "", 0
				for range tc.total + 2 {
					path := tc.path + fmt.Sprintf("&limit=%d", limit)
					if after != "" {
						path += "&after=" + after
					}
					r := c.do(http.MethodGet, path, nil, nil)
					require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
					require.Equal(t, tc.want(after, limit), string(r.raw), "page after %q", after)
					rows := r.body[tc.name].([]any)
					seen += len(rows)
					if len(rows) < limit {
						break
					}
					after = rows[len(rows)-1].(map[string]any)[tc.key].(string)
				}
				assert.Equal(t, tc.total, seen, "rows over all pages")
			})
		}
	}
	// Filters and paging together: the unused items, two at a time.
	r := c.do(http.MethodGet, "/entry/inventory?entry_ids=&user_ids=&authority_ids=&used=false&limit=2", nil, nil)
	items := requireInventory(t, r)
	require.Len(t, items, 2)
	for _, it := range items {
		assert.Equal(t, false, it["item"].(map[string]any)["used"])
	}
	// An empty limit or after is no paging, as an empty filter is no filter.
	assert.Len(t, requireWallets(t, c.do(http.MethodGet, "/wallet?limit=&after=", nil, nil)), 10)
}
