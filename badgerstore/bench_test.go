package badgerstore_test

import (
	"testing"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
	"github.com/walletledger/ledger/storetest"
)

func BenchmarkLedger(b *testing.B) {
	for _, mode := range []struct {
		name     string
		inMemory bool
		opts     []badgerstore.Option
	}{
		{"durable", false, nil},
		{"nosync", false, []badgerstore.Option{badgerstore.WithSyncWrites(false)}},
		{"memory", true, []badgerstore.Option{badgerstore.WithInMemory()}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			storetest.Benchmark(b, func(b *testing.B) ledger.Store {
				dir := ""
				if !mode.inMemory {
					dir = b.TempDir()
				}
				s, err := badgerstore.Open(dir, mode.opts...)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = s.Close() })
				return s
			})
		})
	}
}
