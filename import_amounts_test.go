package ledger_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
	"github.com/walletledger/ledger/memstore"
)

// TestImportOddExponents imports amounts and balances whose exponents no
// store should have to hold ("0e5000", "1." and 1,001 zeros), after more
// entries than one write transaction takes, so that a refusal by the
// store in the writing pass would leave a partial ledger. Import must
// refuse such a stream in its check pass, writing nothing, or import it
// with equal values, in a form the ledger can carry (no 10,001-digit
// totals), and verify.
//
// It passes only with validation that normalises or refuses such amounts
// (checkNewEntry, issue 10 item 2).
func TestImportOddExponents(t *testing.T) {
	src := newLedger(t)
	fill(t, src, 1100)
	lines := strings.SplitAfter(exportV5(t, src), "\n")
	lines = lines[:len(lines)-1]
	// A version 1 stream: it needs no end marker to be edited.
	lines[0] = `{"format":"walletledger-export","version":1}` + "\n"
	if strings.HasPrefix(lines[len(lines)-1], `{"end"`) {
		lines = lines[:len(lines)-1]
	}
	var last struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &last))
	nanos, _, ok := ledger.ParseEntryID(last.ID)
	require.True(t, ok)

	zeros := strings.Repeat("0", 1001)
	odd := []struct{ user, amount, balance, authorityBalance string }{
		{"odd", "0e5000", "0e-10000", "0"},
		{"odd", "1." + zeros, "1." + zeros, "10e-1"},
		{"odd", "0e-10000", "1e0", "1." + zeros + zeros},
		{"odd", "2.5" + zeros, "35e-1", "3.5"},
		{"odd", "-1." + zeros, "2.5" + zeros, "250e-2"},
		{"odd2", "0e-10000", "0e5000", "0e-10000"},
		{"odd2", "7e0", "7." + zeros, "0.7e1"},
	}
	for i, o := range odd {
		n := nanos + int64(i+1)
		lines = append(lines, fmt.Sprintf(`{"id":"%016x%08x","authority_id":"odd-auth","user_id":%q,"created_on":%q,"amount":%q,"reason":"odd","balance":%q,"authority_balance":%q}`+"\n",
			n, 0, o.user, time.Unix(0, n).UTC().Format(time.RFC3339Nano), o.amount, o.balance, o.authorityBalance))
	}
	stream := strings.Join(lines, "")

	stores := []struct {
		name string
		open func(t *testing.T) ledger.Store
	}{
		{"memstore", func(*testing.T) ledger.Store { return memstore.New() }},
		{"badgerstore", func(t *testing.T) ledger.Store {
			s, err := badgerstore.Open("", badgerstore.WithInMemory())
			require.NoError(t, err)
			return s
		}},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			ctx := context.Background()
			dst, err := ledger.New(st.open(t))
			require.NoError(t, err)
			t.Cleanup(func() { _ = dst.Close() })
			err = ledger.Import(ctx, dst, strings.NewReader(stream))
			if err != nil {
				require.ErrorIs(t, err, ledger.ErrInvalid, "refused in the check pass, or a store error in the writing pass")
				requireEmpty(t, dst)
				return
			}
			require.NoError(t, dst.Verify(ctx))
			es, err := dst.Entries(ctx, ledger.EntryQuery{UserIDs: []string{"odd", "odd2"}})
			require.NoError(t, err)
			require.Len(t, es, len(odd))
			sane := func(what string, d decimal.Decimal) {
				t.Helper()
				require.True(t, d.Exponent() >= -ledger.DefaultPlaces && d.Exponent() <= ledger.DefaultDigits,
					"%s %s has exponent %d", what, d.String(), d.Exponent())
			}
			for i, e := range es {
				require.True(t, e.Amount.Equal(dec(odd[i].amount)), "entry %d: got amount %s, want %s", i, e.Amount, odd[i].amount)
				require.True(t, e.Balance.Equal(dec(odd[i].balance)), "entry %d: got balance %s, want %s", i, e.Balance, odd[i].balance)
				sane("amount", e.Amount)
				sane("balance", e.Balance)
			}
			for _, q := range []ledger.WalletQuery{{UserIDs: []string{"odd", "odd2"}}, {UserIDs: []string{"odd", "odd2"}, AuthorityIDs: []string{"odd-auth"}}} {
				ws, err := dst.Wallets(ctx, q)
				require.NoError(t, err)
				require.Len(t, ws, 2)
				require.True(t, ws[0].Total.Equal(dec("2.5")), "got %s", ws[0].Total)
				require.True(t, ws[1].Total.Equal(dec("7")), "got %s", ws[1].Total)
				sane("total", ws[0].Total)
				sane("total", ws[1].Total)
			}
		})
	}
}

// TestImportHugeExponents feeds Import recorded balances and an end
// marker total with the largest exponents a decimal string may carry
// (decimal.MaxDecodeExponent): equal values import, and what is written
// is the ledger's own sums; unequal ones are refused, and so are larger
// exponents.
func TestImportHugeExponents(t *testing.T) {
	ctx := context.Background()
	src := newLedger(t)
	for _, a := range []string{"5", "-5"} {
		_, err := src.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec(a), Reason: "r"})
		require.NoError(t, err)
	}
	out := exportV5(t, src)
	require.Contains(t, out, `"total":"0"}}`)
	for _, tc := range []struct{ name, from, to, want string }{
		{"zero balance", `"balance":"0"`, `"balance":"0e-10000"`, ""},
		{"zero total", `"total":"0"`, `"total":"0e10000"`, ""},
		{"huge balance", `"balance":"5"`, `"balance":"5e10000"`, "line 2: entry"},
		{"tiny balance", `"balance":"0"`, `"balance":"1e-10000"`, "line 3: entry"},
		{"tiny total", `"total":"0"`, `"total":"1e-10000"`, "line 4: the end marker's total is an amount of 1 digits with exponent -10000"},
		{"beyond the decimal limit", `"balance":"0"`, `"balance":"0e-2000000000"`, "line 3: error decoding"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, 1, strings.Count(out, tc.from))
			dst := newLedger(t)
			err := ledger.Import(ctx, dst, strings.NewReader(strings.Replace(out, tc.from, tc.to, 1)))
			if tc.want == "" {
				require.NoError(t, err)
				require.Equal(t, out, exportV5(t, dst), "the ledger's own sums are written")
				return
			}
			require.ErrorIs(t, err, ledger.ErrInvalid)
			require.ErrorContains(t, err, tc.want)
			requireEmpty(t, dst)
		})
	}
}
