package badgerstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

func TestValueLogGC(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	rounds := make(chan struct{}, 1)
	s, err := badgerstore.Open(dir,
		badgerstore.WithValueLogGC(time.Millisecond, 0.5),
		badgerstore.WithGCRoundHook(func() {
			select {
			case rounds <- struct{}{}:
			default:
			}
		}))
	require.NoError(t, err)
	done := badgerstore.GCDone(s)
	require.NotNil(t, done)
	l, err := ledger.New(s)
	require.NoError(t, err)

	// Records with data large enough for the value log, then replaced
	// when their items are used: garbage for the collector.
	data := fmt.Appendf(nil, "%q", strings.Repeat("x", 1000))
	for i := range 50 {
		e, err := l.CreateEntry(ctx, ledger.NewEntry{
			AuthorityID: "shop", UserID: fmt.Sprint("u", i%5), Amount: dec("1"), Reason: "r", Item: &ledger.Item{Name: "big", Data: data},
		})
		require.NoError(t, err)
		_, err = l.UseItem(ctx, "shop", e.ID)
		require.NoError(t, err)
	}
	for range 3 {
		select {
		case <-rounds:
		case <-time.After(10 * time.Second):
			t.Fatal("no value-log GC round ran")
		}
	}
	require.NoError(t, l.Close())
	select {
	case <-done:
	default:
		t.Fatal("Close returned while the value-log GC goroutine still runs")
	}

	l = newLedger(t, open(t, dir))
	require.NoError(t, l.Verify(ctx))
	inv, err := l.Inventory(ctx, ledger.InventoryQuery{Used: ledger.UsedOnly})
	require.NoError(t, err)
	require.Len(t, inv, 50)
	require.Equal(t, data, []byte(inv[0].Item.Data))
}

func TestNoValueLogGCByDefault(t *testing.T) {
	s := open(t, t.TempDir())
	require.Nil(t, badgerstore.GCDone(s))
}
