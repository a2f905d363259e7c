package ledger_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
)

// FuzzCreateEntry feeds arbitrary entries to a ledger that holds one
// wallet: nothing may panic, every refusal must be one of the documented
// errors and write nothing, and whatever is written must be what was
// asked for.
func FuzzCreateEntry(f *testing.F) {
	f.Add("a", "u", "1", "r", false, "", []byte(nil), "")
	f.Add("a", "u", "-100", "r", true, "item", []byte(`[1, {"a": null}]`), "k")
	f.Add("", "\xff", "1e30", "", true, "", []byte(`{`), "")
	f.Add("a", "u", "0.000000001", "r", false, "", []byte(nil), "")
	f.Add("a", "u", "1e999999999", "r", false, "", []byte(nil), "")
	f.Add("a", "u", "1e-999999999", "r", false, "", []byte(nil), "")
	f.Add("a", "u", "-100.5", "r", true, "n", []byte(`"x"`), "seed")
	f.Add("a", "u", "0e-10000", "r", true, "n", []byte("[[[\"\xff\"]]]"), "")
	f.Add("a", "u", "1.0000000000000000000000", "r", false, "", []byte(nil), "")
	f.Fuzz(func(t *testing.T, auth, user, amount, reason string, hasItem bool, name string, data []byte, key string) {
		ctx := context.Background()
		l := newLedger(t)
		seed := ledger.NewEntry{AuthorityID: "bank", UserID: "u", Amount: decimal.NewFromInt(100), Reason: "seed", IdempotencyKey: "seed"}
		if _, err := l.CreateEntry(ctx, seed); err != nil {
			t.Fatal(err)
		}
		amt, err := decimal.NewFromString(amount)
		if err != nil {
			amt = decimal.Zero
		}
		ne := ledger.NewEntry{AuthorityID: auth, UserID: user, Amount: amt, Reason: reason, IdempotencyKey: key}
		if hasItem {
			ne.Item = &ledger.Item{Name: name, Data: data}
		}
		e, err := l.CreateEntry(ctx, ne)
		es, qerr := l.Entries(ctx, ledger.EntryQuery{})
		if qerr != nil {
			t.Fatal(qerr)
		}
		if verr := l.Verify(ctx); verr != nil {
			t.Fatal(verr)
		}
		if err != nil {
			if !errors.Is(err, ledger.ErrInvalid) && !errors.Is(err, ledger.ErrNotEnoughFunds) && !errors.Is(err, ledger.ErrIdempotencyConflict) {
				t.Fatalf("undocumented error: %v", err)
			}
			if len(es) != 1 {
				t.Fatalf("a refused entry (%v) wrote %d entries", err, len(es)-1)
			}
			return
		}
		if len(es) == 1 {
			// Only a replay of the seed writes nothing and succeeds.
			if e.ID != es[0].ID {
				t.Fatalf("CreateEntry returned %s but wrote nothing", e.ID)
			}
			return
		}
		if e.AuthorityID != auth || e.UserID != user || !e.Amount.Equal(amt) || e.Reason != reason || (e.Item == nil) != !hasItem {
			t.Fatalf("wrote %+v for %+v", e, ne)
		}
		if e.Amount.Exponent() < -ledger.DefaultPlaces || e.Balance.Exponent() < -ledger.DefaultPlaces {
			t.Fatalf("amount %s or balance %s kept an exponent past the ledger's places", e.Amount, e.Balance)
		}
		if hasItem && (e.Item.Name != name || e.Item.Used || !bytes.Equal(e.Item.Data, data)) {
			t.Fatalf("wrote item %+v for %+v", e.Item, ne.Item)
		}
	})
}

// FuzzParseEntryID: ParseEntryID accepts exactly what FormatEntryID
// makes, 24 lowercase hex digits whose first 16 fit an int64, and gives
// back the parts FormatEntryID was given.
func FuzzParseEntryID(f *testing.F) {
	f.Add("0000000000000000000000000")
	f.Add(ledger.FormatEntryID(1_700_000_000_123_456_789, 42))
	f.Add(ledger.FormatEntryID(math.MaxInt64, math.MaxUint32))
	f.Add("8000000000000000000000000")
	f.Add("00000000000000000000000A")
	f.Add("0000000000000000000000g0")
	f.Add("")
	f.Fuzz(func(t *testing.T, id string) {
		nanos, seq, ok := ledger.ParseEntryID(id)
		want := len(id) == 24 && strings.Trim(id, "0123456789abcdef") == "" && id[0] < '8'
		if ok != want {
			t.Fatalf("ParseEntryID(%q): ok %v, want %v", id, ok, want)
		}
		if ok && ledger.FormatEntryID(nanos, seq) != id {
			t.Fatalf("ParseEntryID(%q) = %d, %d, which format as %q", id, nanos, seq, ledger.FormatEntryID(nanos, seq))
		}
		if !ok && (nanos != 0 || seq != 0) {
			t.Fatalf("ParseEntryID(%q) refused but returned %d, %d", id, nanos, seq)
		}
	})
}
