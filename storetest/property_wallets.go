package storetest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"pgregory.net/rapid"

	"github.com/walletledger/ledger"
)

// The model's operations on wallets (issue 11): limits, transfers,
// reversals, retries of keyed writes, and the balances checked after
// every step.

func cents(n int) decimal.Decimal { return decimal.New(int64(n), -2) }

// setLimits sets a wallet's floor and cap, sometimes to limits the
// wallet is already past (a floor above a negative total, a cap below its
// total), sometimes to invalid ones.
func (m *model) setLimits(rt *rapid.T) {
	w := wallet{rapid.SampledFrom(pUsers).Draw(rt, "user"), rapid.SampledFrom(pCurrencies).Draw(rt, "currency")}
	sum := m.sum(w)
	lim := ledger.WalletLimits{UserID: w.user, Currency: w.currency}
	switch rapid.IntRange(0, 7).Draw(rt, "floor") {
	case 2:
		lim.Floor = cents(-1000)
	case 3:
		lim.Floor = cents(-5050)
	case 4:
		lim.Floor = cents(-30000)
	case 5: // above the total, if the total is negative: a raised floor
		lim.Floor = decimal.Min(decimal.Zero, sum.Add(cents(1)))
	case 6:
		lim.Floor = cents(100)
	case 7: // above Available, if that is negative: a raised floor
		lim.Floor = decimal.Min(decimal.Zero, sum.Sub(m.held(w)).Add(cents(1)))
	}
	switch rapid.IntRange(0, 6).Draw(rt, "cap") {
	case 2:
		lim.Cap = ptr(decimal.Zero)
	case 3:
		lim.Cap = ptr(cents(2500))
	case 4:
		lim.Cap = ptr(cents(15000))
	case 5: // below the total, if the total is positive: a lowered cap
		lim.Cap = ptr(decimal.Max(decimal.Zero, sum.Sub(cents(1))))
	case 6:
		lim.Cap = ptr(cents(-1))
	}
	authority := rapid.SampledFrom(pAuths).Draw(rt, "authority")
	err := m.l.SetLimits(m.ctx(), authority, lim)
	if lim.Floor.IsPositive() || lim.Cap != nil && lim.Cap.IsNegative() {
		requireRefused(rt, invalidInput, err, "SetLimits(%+v)", lim)
		return
	}
	if err != nil {
		rt.Fatalf("SetLimits(%+v): %v", lim, err)
	}
	m.limits[w] = lim
	m.availAtLimits[w] = sum.Sub(m.held(w))
	m.limitsSet(authority, lim)
}

func ptr[T any](v T) *T { return &v }

// partner is the index of the other entry of entry i's transfer.
func (m *model) partner(rt *rapid.T, i int) int {
	for j, e := range m.entries {
		if j != i && e.TransferID == m.entries[i].TransferID {
			return j
		}
	}
	rt.Fatalf("entry %s: no other entry of transfer %s in the model", m.entries[i].ID, m.entries[i].TransferID)
	return -1
}

// drawTransfer draws a transfer, mostly from a user who has funds
// available in its currency, sometimes an invalid one (to oneself, a
// non-positive amount).
func (m *model) drawTransfer(rt *rapid.T) ledger.NewTransfer {
	currency := rapid.SampledFrom(pCurrencies).Draw(rt, "currency")
	var funded []string
	for _, u := range pUsers {
		if w := (wallet{u, currency}); m.sum(w).Sub(m.held(w)).IsPositive() {
			funded = append(funded, u)
		}
	}
	var from string
	if len(funded) > 0 && rapid.IntRange(0, 3).Draw(rt, "funded") > 0 {
		from = rapid.SampledFrom(funded).Draw(rt, "from")
	} else {
		from = rapid.SampledFrom(pUsers).Draw(rt, "from")
	}
	to := from
	if rapid.IntRange(0, 9).Draw(rt, "toSelf") > 0 {
		to = rapid.SampledFrom(slices.DeleteFunc(slices.Clone(pUsers), func(u string) bool { return u == from })).Draw(rt, "to")
	}
	amount := cents(rapid.IntRange(1, 3000).Draw(rt, "cents"))
	if w, ok := m.drawHeldWallet(rt); ok {
		from, currency, amount = w.user, w.currency, m.drawNearRoom(rt, w)
		if to == from {
			to = pUsers[(slices.Index(pUsers, from)+1)%len(pUsers)]
		}
	}
	if rapid.IntRange(0, 9).Draw(rt, "nonPositive") == 0 {
		amount = cents(-rapid.IntRange(0, 100).Draw(rt, "minusCents"))
	}
	nt := ledger.NewTransfer{
		AuthorityID: rapid.SampledFrom(pAuths).Draw(rt, "authority"),
		FromUserID:  from, ToUserID: to,
		Currency: currency,
		Amount:   amount,
		Reason:   rapid.SampledFrom([]string{"gift", "trade"}).Draw(rt, "reason"),
		Metadata: maps.Clone(rapid.SampledFrom(pMetadata).Draw(rt, "metadata")),
	}
	if rapid.IntRange(0, 2).Draw(rt, "keyed") == 0 {
		// Keys of their own, or the entries', which conflict.
		nt.IdempotencyKey = rapid.SampledFrom([]string{"t1", "t2", pKeys[0]}).Draw(rt, "key")
	}
	return nt
}

func (m *model) transfer(rt *rapid.T) { m.doTransfer(rt, m.drawTransfer(rt)) }

// predictTransfer says what the ledger must do with nt: refuse it as
// invalid, replay or refuse a retry of its key, refuse it for From's
// floor or To's cap, or write it. For a replay it returns the index of
// the original's From entry.
func (m *model) predictTransfer(rt *rapid.T, nt ledger.NewTransfer) (outcome, int) {
	if nt.FromUserID == nt.ToUserID || !nt.Amount.IsPositive() {
		return invalidInput, 0
	}
	if nt.IdempotencyKey != "" {
		if i, ok := m.keys[[2]string{nt.AuthorityID, nt.IdempotencyKey}]; ok {
			e := m.entries[i]
			if e.TransferID != e.ID {
				return conflict, i // the key wrote an entry
			}
			same := e.UserID == nt.FromUserID && e.Amount.Equal(nt.Amount.Neg()) && e.Currency == nt.Currency &&
				maps.Equal(e.Metadata, nt.Metadata) && e.Reason == nt.Reason && m.entries[m.partner(rt, i)].UserID == nt.ToUserID
			if same {
				return replayed, i
			}
			return conflict, i
		}
	}
	from, to := wallet{nt.FromUserID, nt.Currency}, wallet{nt.ToUserID, nt.Currency}
	if o := limitsOutcome(limitsOf(m.limits, from), m.sum(from), m.held(from), nt.Amount.Neg()); o != written {
		return o, 0
	}
	return limitsOutcome(limitsOf(m.limits, to), m.sum(to), m.held(to), nt.Amount), 0
}

func (m *model) doTransfer(rt *rapid.T, nt ledger.NewTransfer) {
	want, orig := m.predictTransfer(rt, nt)
	got, err := m.l.Transfer(m.ctx(), nt)
	from, to := wallet{nt.FromUserID, nt.Currency}, wallet{nt.ToUserID, nt.Currency}
	switch want {
	case written:
		if err != nil {
			rt.Fatalf("Transfer(%+v): %v", nt, err)
		}
		if got.ID != got.From.ID {
			rt.Fatalf("Transfer(%+v): ID %s, From's %s", nt, got.ID, got.From.ID)
		}
		ln := links{transferID: got.ID}
		m.checkWritten(rt, ledger.NewEntry{AuthorityID: nt.AuthorityID, UserID: nt.FromUserID, Currency: nt.Currency,
			Amount: nt.Amount.Neg(), Reason: nt.Reason, Metadata: nt.Metadata, IdempotencyKey: nt.IdempotencyKey}, ln, got.From)
		m.checkWritten(rt, ledger.NewEntry{AuthorityID: nt.AuthorityID, UserID: nt.ToUserID, Currency: nt.Currency,
			Amount: nt.Amount, Reason: nt.Reason, Metadata: nt.Metadata}, ln, got.To)
	case replayed:
		if err != nil {
			rt.Fatalf("retry of transfer %s: %v", m.entries[orig].ID, err)
		}
		if got.ID != m.entries[orig].ID {
			rt.Fatalf("retry of transfer %s: got transfer %s", m.entries[orig].ID, got.ID)
		}
		m.requireCurrent(rt, "retry of transfer, From", got.From, orig)
		m.requireCurrent(rt, "retry of transfer, To", got.To, m.partner(rt, orig))
	case noFunds:
		requireLimitsError(rt, want, err, limitsOf(m.limits, from), m.sum(from), m.held(from), nt.Amount.Neg())
	case capExceeded:
		requireLimitsError(rt, want, err, limitsOf(m.limits, to), m.sum(to), m.held(to), nt.Amount)
	default:
		requireRefused(rt, want, err, "Transfer(%+v)", nt)
	}
}

// reversalRefusal is why the model expects a reversal to be refused, and
// for limits, by which wallet.
type reversalRefusal struct {
	outcome outcome
	lim     ledger.WalletLimits
	sum     decimal.Decimal
	held    decimal.Decimal
	amount  decimal.Decimal
}

// predictReverse says what the ledger must do when authority reverses
// entry i: refuse it, or write the reversals of origs (the entry, or
// both entries of its transfer, in ID order).
func (m *model) predictReverse(rt *rapid.T, authority string, i int) (reversalRefusal, []int) {
	if i < 0 {
		return reversalRefusal{outcome: notFound}, nil
	}
	origs := []int{i}
	if m.entries[i].TransferID != "" {
		origs = append(origs, m.partner(rt, i))
		slices.Sort(origs)
	}
	for _, o := range origs {
		e := m.entries[o]
		switch {
		case e.AuthorityID != authority:
			return reversalRefusal{outcome: forbidden}, nil
		case e.Reverses != "":
			return reversalRefusal{outcome: invalidInput}, nil
		case e.ReversedBy != "":
			return reversalRefusal{outcome: alreadyReversed}, nil
		case e.Item != nil && e.Item.Used:
			return reversalRefusal{outcome: itemUsed}, nil
		}
	}
	sums := map[wallet]decimal.Decimal{}
	for _, o := range origs {
		e := m.entries[o]
		w := wallet{e.UserID, e.Currency}
		if _, ok := sums[w]; !ok {
			sums[w] = m.sum(w)
		}
		lim, held := limitsOf(m.limits, w), m.held(w)
		if out := limitsOutcome(lim, sums[w], held, e.Amount.Neg()); out != written {
			return reversalRefusal{outcome: out, lim: lim, sum: sums[w], held: held, amount: e.Amount.Neg()}, nil
		}
		sums[w] = sums[w].Add(e.Amount.Neg())
	}
	return reversalRefusal{outcome: written}, origs
}

// reverse reverses an entry, mostly by the authority that wrote it.
func (m *model) reverse(rt *rapid.T) {
	id, i := "000000000000000000000000", -1
	if len(m.entries) == 0 && rapid.IntRange(0, 7).Draw(rt, "early") > 0 {
		return
	}
	if len(m.entries) > 0 && rapid.IntRange(0, 7).Draw(rt, "bogus") > 0 {
		i = rapid.IntRange(0, len(m.entries)-1).Draw(rt, "entry")
		id = m.entries[i].ID
	}
	authority := rapid.SampledFrom(pAuths).Draw(rt, "authority")
	if i >= 0 && rapid.IntRange(0, 4).Draw(rt, "byWriter") > 0 {
		authority = m.entries[i].AuthorityID
	}
	reason := rapid.SampledFrom([]string{"refund", "chargeback"}).Draw(rt, "reason")
	want, origs := m.predictReverse(rt, authority, i)
	got, err := m.l.Reverse(m.ctx(), authority, id, reason)
	switch want.outcome {
	case written:
	case noFunds, capExceeded:
		requireLimitsError(rt, want.outcome, err, want.lim, want.sum, want.held, want.amount)
		return
	default:
		requireRefused(rt, want.outcome, err, "Reverse(%q, %s)", authority, id)
		return
	}
	if err != nil || len(got) != len(origs) {
		rt.Fatalf("Reverse(%q, %s): got %d entries, %v; want %d", authority, id, len(got), err, len(origs))
	}
	// The issue leaves the order of the answer, a reversal's metadata and
	// whether a transfer's reversal is itself a transfer to the ledger;
	// the two entries of a transfer's reversal share a TransferID.
	got = slices.SortedFunc(slices.Values(got), func(a, b ledger.Entry) int { return strings.Compare(a.ID, b.ID) })
	ln := links{anyMetadata: true}
	if len(got) == 2 {
		if got[0].TransferID != got[1].TransferID {
			rt.Fatalf("Reverse(%s): a transfer's reversals in transfers %q and %q", id, got[0].TransferID, got[1].TransferID)
		}
		ln.transferID = got[0].TransferID
	}
	done := map[int]bool{}
	for _, g := range got {
		o := slices.IndexFunc(origs, func(o int) bool { return m.entries[o].ID == g.Reverses })
		if o < 0 || done[o] {
			rt.Fatalf("Reverse(%s): entry %+v reverses %q, want one of %d entries each once", id, g, g.Reverses, len(origs))
		}
		done[o] = true
		r := m.entries[origs[o]]
		ln.reverses = r.ID
		m.checkWritten(rt, ledger.NewEntry{AuthorityID: r.AuthorityID, UserID: r.UserID, Currency: r.Currency,
			Amount: r.Amount.Neg(), Reason: reason, Metadata: g.Metadata}, ln, g)
		m.entries[origs[o]].ReversedBy = g.ID
		if it := m.entries[origs[o]].Item; it != nil {
			it.Revoked = true
		}
	}
}

// retry repeats a keyed write of the model, as it was or with one field
// changed, as the same kind of write or the other: the ledger replays
// the first or refuses the second with ErrIdempotencyConflict.
func (m *model) retry(rt *rapid.T) {
	var keyed []int
	for i, e := range m.entries {
		if e.key != "" {
			keyed = append(keyed, i)
		}
	}
	if len(keyed) == 0 {
		return
	}
	i := rapid.SampledFrom(keyed).Draw(rt, "of")
	e := m.entries[i]
	ne := ledger.NewEntry{AuthorityID: e.AuthorityID, UserID: e.UserID, Currency: e.Currency, Amount: e.Amount,
		Reason: e.Reason, Metadata: maps.Clone(e.Metadata), IdempotencyKey: e.key}
	if e.Item != nil {
		ne.Item = &ledger.Item{Name: e.Item.Name, Data: e.Item.Data}
	}
	nt := ledger.NewTransfer{AuthorityID: e.AuthorityID, FromUserID: e.UserID, ToUserID: pUsers[0], Currency: e.Currency,
		Amount: e.Amount.Neg(), Reason: e.Reason, Metadata: maps.Clone(e.Metadata), IdempotencyKey: e.key}
	if e.TransferID != "" {
		nt.ToUserID = m.entries[m.partner(rt, i)].UserID
	} else if nt.FromUserID == nt.ToUserID || !nt.Amount.IsPositive() {
		nt.ToUserID, nt.Amount = pUsers[1], cents(1)
		if nt.FromUserID == nt.ToUserID {
			nt.ToUserID = pUsers[0]
		}
	}
	switch rapid.IntRange(0, 7).Draw(rt, "change") { // 0, 6 and 7: none
	case 1:
		ne.Amount, nt.Amount = ne.Amount.Add(cents(1)), nt.Amount.Add(cents(1))
	case 2:
		ne.Metadata, nt.Metadata = map[string]string{"other": "x"}, map[string]string{"other": "x"}
	case 3:
		c := pCurrencies[(slices.Index(pCurrencies, e.Currency)+1)%len(pCurrencies)]
		ne.Currency, nt.Currency = c, c
	case 4:
		ne.Reason, nt.Reason = ne.Reason+"?", nt.Reason+"?"
	case 5: // another payee, for a transfer; another user, for an entry
		u := pUsers[(slices.Index(pUsers, nt.ToUserID)+1)%len(pUsers)]
		if u == nt.FromUserID {
			u = pUsers[(slices.Index(pUsers, u)+1)%len(pUsers)]
		}
		nt.ToUserID, ne.UserID = u, u
	}
	asTransfer := e.TransferID != ""
	if rapid.IntRange(0, 4).Draw(rt, "otherKind") == 0 {
		asTransfer = !asTransfer
	}
	if asTransfer {
		m.doTransfer(rt, nt)
	} else {
		m.createEntry(rt, ne)
	}
}

// checkBalances compares every wallet's Balance, and every user's
// Balances, with the model: the total, what its active holds hold, the
// limits set last; and it checks that the wallet's Available is not
// below its floor, unless the floor was raised above it and no spend
// since took it lower. Balances lists the currencies in which the user
// has an entry, a hold or limits other than the default.
func (m *model) checkBalances(rt *rapid.T) {
	currencies := slices.Sorted(slices.Values(pCurrencies))
	for _, u := range pUsers {
		var want []ledger.Balance
		for _, c := range currencies {
			w := wallet{u, c}
			lim := limitsOf(m.limits, w)
			sum, has := total(m.entries, u, c, nil, time.Time{})
			held := m.held(w)
			b := ledger.Balance{UserID: u, Currency: c, Total: sum, Held: held, Available: sum.Sub(held), Floor: lim.Floor, Cap: lim.Cap}
			got, err := m.l.Balance(m.ctx(), u, c)
			if err != nil {
				rt.Fatalf("Balance(%s, %q): %v", u, c, err)
			}
			requireSameBalance(rt, fmt.Sprintf("Balance(%s, %q)", u, c), got, b)
			// Only SetLimits can leave a wallet below its floor (a
			// raised floor); what follows is deposits and freed holds,
			// which raise Available, and spends, which may not end
			// below the floor. So Available is at least the lower of the
			// floor and what it was when the limits were set (0 before
			// any).
			if least := decimal.Min(lim.Floor, m.availAtLimits[w]); got.Available.LessThan(least) {
				rt.Fatalf("Balance(%s, %q): Available %s, below floor %s and %s, what it was when the limits were set",
					u, c, got.Available, lim.Floor, m.availAtLimits[w])
			}
			if has || m.hasHold(w) || !lim.Floor.IsZero() || lim.Cap != nil {
				want = append(want, b)
			}
		}
		got, err := m.l.Balances(m.ctx(), u)
		if err != nil {
			rt.Fatalf("Balances(%s): %v", u, err)
		}
		if len(got) != len(want) {
			rt.Fatalf("Balances(%s): got %+v, want %+v", u, got, want)
		}
		for i := range got {
			requireSameBalance(rt, fmt.Sprintf("Balances(%s)[%d]", u, i), got[i], want[i])
		}
	}
}

func requireSameBalance(rt *rapid.T, what string, got, want ledger.Balance) {
	if got.UserID != want.UserID || got.Currency != want.Currency || !got.Total.Equal(want.Total) ||
		!got.Held.Equal(want.Held) || !got.Available.Equal(want.Available) || !got.Floor.Equal(want.Floor) ||
		(got.Cap == nil) != (want.Cap == nil) || got.Cap != nil && !got.Cap.Equal(*want.Cap) {
		rt.Fatalf("%s: got %+v (cap %v), want %+v (cap %v)", what, got, got.Cap, want, want.Cap)
	}
}
