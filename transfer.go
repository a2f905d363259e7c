package ledger

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// The export format is JSON Lines: a header line, one line per entry in
// ID order, from version 4 one line per wallet with limits in (user,
// currency) order, from version 5 one line per hold in ID order, and,
// from version 2, an end marker that counts what came before it:
//
//	{"format":"walletledger-export","version":6}
//	{"id":"…","authority_id":"shop","user_id":"alice",…,"item":{"name":"Soda","used":true,"used_on":"…","used_by":"arcade","use_idempotency_key":"use-1"},…,"balance":"10","authority_balance":"10","currency":"gems","metadata":{"order":"17"}}
//	{"limits":{"user_id":"alice","currency":"gems","floor":"-50","cap":"1000","set_by":"bank","set_on":"…"}}
//	{"hold":{"hold_id":"…","authority_id":"shop","user_id":"alice","amount":"5","reason":"…","created_on":"…","expires":"…","state":"active","idempotency_key":"h-1"}}
//	{"change":{"kind":"entry","at":"…","authority_id":"shop","ref":"…"}}
//	{"end":{"entries":1,"items":1,"used_items":1,"total":"10","limits":1,"holds":1,"held":"5","changes":1}}
//
// An entry's hold_id (on a capture's entry) is from version 5; the
// marker's held sums the amounts of the active holds. From version 6 the
// change feed follows the holds, one line per change in feed order,
// without its cursor (a ledger importing it gives its own).
// An entry's currency, metadata, transfer_id, reverses, reversed_by and
// its item's revoked are from version 4, which the marker's total sums
// over every currency.
// Amounts and balances are decimal strings; item data is base64
// (encoding/json would compact raw JSON, and the data must survive byte
// for byte); used_on is RFC 3339 with nanoseconds. The marker's total is
// the sum of every amount, that is of every wallet. Version 2 is the
// same without an item's used_on, used_by and use_idempotency_key (it
// was written before uses were recorded); version 1 is version 2
// without the marker: a stream cut at a line boundary read as a smaller
// ledger.
const (
	exportFormat  = "walletledger-export"
	exportVersion = 6
)

// exportUseVersion is the first version whose items carry their use;
// exportWalletVersion the first with currencies, metadata, transfer and
// reversal links and limits lines (see Export).
const (
	exportUseVersion    = 3
	exportWalletVersion = 4
	exportHoldVersion   = 5
	exportChangeVersion = 6
)

type exportHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
}

type exportLine struct {
	ID               string          `json:"id"`
	AuthorityID      string          `json:"authority_id"`
	UserID           string          `json:"user_id"`
	CreatedOn        time.Time       `json:"created_on"`
	Amount           decimal.Decimal `json:"amount"`
	Reason           string          `json:"reason"`
	Item             *exportItem     `json:"item,omitempty"`
	IdempotencyKey   string          `json:"idempotency_key,omitempty"`
	Balance          decimal.Decimal `json:"balance"`
	AuthorityBalance decimal.Decimal `json:"authority_balance"`
	// From version 4.
	Currency   string            `json:"currency,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	TransferID string            `json:"transfer_id,omitempty"`
	Reverses   string            `json:"reverses,omitempty"`
	ReversedBy string            `json:"reversed_by,omitempty"`
	// From version 5.
	HoldID string `json:"hold_id,omitempty"`
}

// exportHold is a hold, on a line of its own after the limits (from
// version 5).
type exportHold struct {
	Hold
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// holdLine is a line holding a hold.
type holdLine struct {
	Hold *exportHold `json:"hold"`
}

// exportChange is a change, on a line of its own after the holds (from
// version 6).
type exportChange struct {
	Kind        ChangeKind    `json:"kind"`
	At          time.Time     `json:"at"`
	AuthorityID string        `json:"authority_id"`
	Ref         string        `json:"ref,omitempty"`
	Limits      *changeLimits `json:"limits,omitempty"`
}

// changeLimits are the limits a limits change set (who and when are the
// change's).
type changeLimits struct {
	UserID   string           `json:"user_id"`
	Currency string           `json:"currency,omitempty"`
	Floor    decimal.Decimal  `json:"floor"`
	Cap      *decimal.Decimal `json:"cap,omitempty"`
}

// changeLine is a line holding a change.
type changeLine struct {
	Change *exportChange `json:"change"`
}

// exportLimits is a wallet's limits, on a line of its own after the
// entries (from version 4).
type exportLimits struct {
	UserID   string           `json:"user_id"`
	Currency string           `json:"currency,omitempty"`
	Floor    decimal.Decimal  `json:"floor"`
	Cap      *decimal.Decimal `json:"cap,omitempty"`
	SetBy    string           `json:"set_by"`
	SetOn    time.Time        `json:"set_on"`
}

type exportItem struct {
	Name string `json:"name"`
	Used bool   `json:"used"`
	Data []byte `json:"data,omitempty"`
	// The use, from version 3; absent while the item is unused and for
	// a use recorded without them.
	UsedOn            time.Time `json:"used_on,omitzero"`
	UsedBy            string    `json:"used_by,omitempty"`
	UseIdempotencyKey string    `json:"use_idempotency_key,omitempty"`
	Revoked           bool      `json:"revoked,omitempty"` // from version 4
}

// exportEnd is what the end marker counts.
type exportEnd struct {
	Entries   int64           `json:"entries"`
	Items     int64           `json:"items"`
	UsedItems int64           `json:"used_items"`
	Total     decimal.Decimal `json:"total"`
	Limits    int64           `json:"limits,omitempty"` // from version 4
	// From version 5: the holds, and the sum of the active ones.
	Holds int64           `json:"holds,omitempty"`
	Held  decimal.Decimal `json:"held,omitzero"`
	// From version 6: the changes.
	Changes int64 `json:"changes,omitempty"`
}

func (e *exportEnd) countHold(h *Hold) {
	e.Holds++
	if h.State == HoldActive {
		e.Held = e.Held.Add(h.Amount)
	}
}

func (e *exportEnd) count(r *Record) {
	e.Entries++
	if r.Item != nil {
		e.Items++
		if r.Item.Used {
			e.UsedItems++
		}
	}
	e.Total = e.Total.Add(r.Amount)
}

// exportTrailer is the end marker line.
type exportTrailer struct {
	End *exportEnd `json:"end"`
}

// importLine is any line after the header: an entry, or with End set the
// end marker (which is then decoded again, alone, to refuse entry fields
// beside it).
type importLine struct {
	exportLine
	exportTrailer
	Limits *exportLimits `json:"limits"`
	Hold   *exportHold   `json:"hold"`
	Change *exportChange `json:"change"`
}

// limitsLine is a line of limits.
type limitsLine struct {
	Limits *exportLimits `json:"limits"`
}

// exportBuffer is how much Export buffers between it and its writer.
const exportBuffer = 64 << 10

// Export writes the whole ledger to w in the export format, version 6:
// a header line; every entry in creation order with its ID, CreatedOn,
// idempotency key, currency, metadata, transfer and reversal links, item
// and its use (used state, UsedOn, UsedBy and the use's idempotency key,
// revoked), its capture's hold, and the balances recorded on it; every
// wallet's limits, with who set them when; every hold, in every state,
// with its idempotency key; the change feed, in order; then an end
// marker that counts the entries, the items and the used
// items and sums the amounts, so that [Import] can tell a whole stream
// from one cut short. It reads one consistent snapshot and streams it,
// holding one entry at a time in memory. [Import] reads the result into
// another ledger, on any store.
//
// Export fails if ctx ends before it has written the last entry, or if w
// fails; what it wrote then has no end marker, and Import refuses it.
// Writes of other callers go on meanwhile; [Ledger.Close] waits for an
// export in flight to end.
func (l *Ledger) Export(ctx context.Context, w io.Writer) error {
	if err := l.enter(ctx); err != nil {
		return err
	}
	defer l.mu.RUnlock()
	bw := bufio.NewWriterSize(w, exportBuffer)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	var writeErr error
	encode := func(v any) bool {
		writeErr = enc.Encode(v)
		return writeErr == nil
	}
	err := l.store.View(ctx, func(tx ReadTx) error {
		if !encode(exportHeader{Format: exportFormat, Version: exportVersion}) {
			return writeErr
		}
		var end exportEnd
		for r, err := range tx.Entries(ctx, Scan{}) {
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			line := exportLine{
				ID: r.ID, AuthorityID: r.AuthorityID, UserID: r.UserID, CreatedOn: r.CreatedOn,
				Amount: r.Amount, Reason: r.Reason, IdempotencyKey: r.IdempotencyKey,
				Balance: r.Balance, AuthorityBalance: r.AuthorityBalance,
				Currency: r.Currency, Metadata: r.Metadata, TransferID: r.TransferID, Reverses: r.Reverses, ReversedBy: r.ReversedBy,
				HoldID: r.HoldID,
			}
			if r.Item != nil {
				line.Item = &exportItem{Name: r.Item.Name, Used: r.Item.Used, Data: r.Item.Data,
					UsedOn: r.Item.UsedOn, UsedBy: r.Item.UsedBy, UseIdempotencyKey: r.UseIdempotencyKey, Revoked: r.Item.Revoked}
			}
			end.count(&r)
			if !encode(line) {
				return writeErr
			}
		}
		for lim, err := range tx.AllLimits(ctx) {
			if err != nil {
				return err
			}
			if !encode(limitsLine{Limits: &exportLimits{UserID: lim.UserID, Currency: lim.Currency, Floor: lim.Floor, Cap: lim.Cap,
				SetBy: lim.SetBy, SetOn: lim.SetOn}}) {
				return writeErr
			}
			end.Limits++
		}
		for h, err := range tx.Holds(ctx, HoldScan{AnyCurrency: true}) {
			if err != nil {
				return err
			}
			if !encode(holdLine{Hold: &exportHold{Hold: h.Hold, IdempotencyKey: h.IdempotencyKey}}) {
				return writeErr
			}
			end.countHold(&h.Hold)
		}
		for c, err := range tx.Changes(ctx, "") {
			if err != nil {
				return err
			}
			line := &exportChange{Kind: c.Kind, At: c.At, AuthorityID: c.AuthorityID, Ref: c.Ref}
			if c.Limits != nil {
				line.Limits = &changeLimits{UserID: c.Limits.UserID, Currency: c.Limits.Currency, Floor: c.Limits.Floor, Cap: c.Limits.Cap}
			}
			if !encode(changeLine{Change: line}) {
				return writeErr
			}
			end.Changes++
		}
		// Ended by ctx, the scan may have stopped early: such a stream
		// must not get the marker that makes it read as whole.
		if err := ctx.Err(); err != nil {
			return err
		}
		if !encode(exportTrailer{End: &end}) {
			return writeErr
		}
		return nil
	})
	switch {
	case writeErr != nil:
		return fmt.Errorf("ledger: export: write: %w", writeErr)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("ledger: export: %w", err)
	case err != nil:
		return storeErr("export", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("ledger: export: write: %w", err)
	}
	return nil
}

// importBatch is the most entries Import writes per store transaction;
// Limits.MaxBatchBytes bounds each one too.
const importBatch = 1000

// Import loads a stream written by [Ledger.Export] into l, which must be
// empty, preserving every field, and then verifies the result as
// [Ledger.Verify] does. It reads the whole stream and checks it before it
// writes anything: a malformed line, an entry the ledger's limits refuse,
// IDs out of order, a recorded balance that disagrees with the entries, a
// balance that would go negative, or (in a version 2 stream) an end
// marker that is missing, disagrees with the stream or is followed by
// anything, fails the import with [ErrInvalid], the line number, and
// nothing written. Streams of versions 1 and 2, written by releases
// before item uses were recorded, still import, their used items with
// no UsedOn or UsedBy; but a version 1 stream, written before the end
// marker, cut short at a line boundary cannot be told from a whole one,
// and imports as a smaller ledger. (Export the result again to get a
// version 3 stream.)
//
// The stream is read twice: directly if r is an io.Seeker (it must not
// change between the two passes), else from a temporary file. Import
// writes in store transactions of at most 1000 entries and within
// Limits.MaxBatchBytes. Writes of other callers wait while Import runs,
// and [Ledger.Close] waits for it to return. Import holds the totals and
// idempotency keys in memory, not the entries.
//
// If ctx ends before the writing pass starts (while r is read or
// checked, or while Import waits for other writes to finish), Import
// writes nothing and returns an error that matches ctx's with errors.Is;
// the import may simply be run again. Once the writing pass has started
// Import ignores ctx: it writes everything, verifies it and reports the
// outcome, so that a cancel neither leaves a partial import behind nor
// reports a finished one as failed. Should the store fail during the
// writing pass, the target holds a partial import: start again with an
// empty store.
func Import(ctx context.Context, l *Ledger, r io.Reader) error {
	rs, cleanup, err := rewindable(ctx, r)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := l.enter(ctx); err != nil {
		return err
	}
	// Held until Import returns, verification included: nothing below
	// may take l.mu again (through l.Verify, say), since a Close waiting
	// for the write lock would block that second RLock, and Close waits
	// for this one.
	defer l.mu.RUnlock()
	req := newRequest(ctx, opExclusive)
	defer req.release()
	req.fn = func() error {
		release, err := l.holdLanes(ctx) // the other lanes' writes wait too
		if err != nil {
			return err
		}
		defer release()
		if err := l.importStream(ctx, rs, nil); err != nil { // check only
			return err
		}
		if err := ctx.Err(); err != nil {
			return err // the last moment to stop with nothing written
		}
		if _, err := rs.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("ledger: import: rewind: %w", err)
		}
		return l.importStream(context.WithoutCancel(ctx), rs, l.store)
	}
	l.commits.submit(req)
	if err := req.err; err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			// Only the check pass and the wait before it see ctx.
			return stopped(err)
		}
		return err
	}
	l.feed.notify() // the imported changes are there for followers
	return l.verifyHeld(context.WithoutCancel(ctx))
}

// stopped reports an import that ctx stopped before it wrote anything.
func stopped(err error) error {
	return fmt.Errorf("ledger: import: stopped before writing anything: %w", err)
}

// rewindable returns r as an io.ReadSeeker, spooling it to a temporary
// file if it is not one.
func rewindable(ctx context.Context, r io.Reader) (io.ReadSeeker, func(), error) {
	if rs, ok := r.(io.ReadSeeker); ok {
		return rs, func() {}, nil
	}
	f, err := os.CreateTemp("", "ledger-import-*")
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: import: spool: %w", err)
	}
	cleanup := func() { f.Close(); os.Remove(f.Name()) }
	if _, err := io.Copy(f, ctxReader{ctx, r}); err != nil {
		cleanup()
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil, nil, stopped(err)
		}
		return nil, nil, fmt.Errorf("ledger: import: read: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("ledger: import: spool: %w", err)
	}
	return f, cleanup, nil
}

// ctxReader stops reading once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// importStream reads and checks an export stream; with a store, it also
// writes it, in transactions of at most importBatch entries and
// Limits.MaxBatchBytes. The check pass and the writing pass run the same
// code on the same bytes, so the writing pass writes exactly what the
// check pass accepted.
func (l *Ledger) importStream(ctx context.Context, r io.Reader, store Store) error {
	if err := l.store.View(ctx, func(tx ReadTx) error {
		for _, err := range tx.Entries(ctx, Scan{}) {
			if err != nil {
				return err
			}
			return ErrNotEmpty
		}
		for _, err := range tx.Holds(ctx, HoldScan{AnyCurrency: true}) {
			if err != nil {
				return err
			}
			return ErrNotEmpty
		}
		for _, err := range tx.Changes(ctx, "") {
			if err != nil {
				return err
			}
			return ErrNotEmpty
		}
		return nil
	}); err != nil {
		if errors.Is(err, ErrNotEmpty) {
			return err
		}
		return storeErr("import", err)
	}

	br := bufio.NewReaderSize(r, 1<<16)
	lineNo := 0
	var raw []byte
	lineErr := func(format string, args ...any) error {
		return fmt.Errorf("ledger: import: line %d: %s: %w", lineNo, fmt.Sprintf(format, args...), ErrInvalid)
	}
	decode := func(v any) error {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return lineErr("%v", err)
		}
		if dec.More() {
			return lineErr("more than one JSON value")
		}
		return nil
	}
	// No line of an export the ledger's limits admit is longer than
	// maxLine (every byte of text escaped as \u0000, item data in
	// base64): a longer one is refused before it is read whole.
	maxLine := 6*(EntryOverheadBytes+3*l.cfg.limits.MaxIDBytes+l.cfg.limits.MaxReasonBytes+l.cfg.limits.MaxItemNameBytes) +
		2*l.cfg.limits.MaxItemDataBytes + 64<<10
	next := func(v any) (bool, error) {
		raw = raw[:0]
		var err error
		for {
			var chunk []byte
			chunk, err = br.ReadSlice('\n')
			raw = append(raw, chunk...)
			if err != bufio.ErrBufferFull {
				break
			}
			if len(raw) > maxLine {
				lineNo++
				return false, lineErr("longer than %d bytes, more than any entry within the ledger's limits", maxLine)
			}
		}
		if err == io.EOF && len(raw) == 0 {
			return false, nil
		}
		if err != nil && err != io.EOF {
			return false, fmt.Errorf("ledger: import: read: %w", err)
		}
		lineNo++
		return true, decode(v)
	}

	var h exportHeader
	if ok, err := next(&h); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("ledger: import: empty stream: %w", ErrInvalid)
		}
		return err
	}
	if h.Format != exportFormat || h.Version < 1 || h.Version > exportVersion {
		return lineErr("not a walletledger export this library reads (format %q version %d)", h.Format, h.Version)
	}

	sums := totalSums{}
	var seen exportEnd // what the stream holds so far
	ended := false

	var batch []Record
	var limits []StoredLimits
	var holds []HoldRecord
	var changes []ChangeRecord
	batchBytes := 0
	touched := map[TotalKey]Total{} // the totals as of the batch's last entry
	flush := func() error {
		if store == nil || len(batch) == 0 && len(limits) == 0 && len(holds) == 0 && len(touched) == 0 && len(changes) == 0 {
			return nil
		}
		err := store.Update(ctx, func(tx Tx) error {
			for _, r := range batch {
				if err := tx.InsertEntry(ctx, r); err != nil {
					return err
				}
			}
			for _, l := range limits {
				if err := tx.SetLimits(ctx, l); err != nil {
					return err
				}
			}
			for _, h := range holds {
				if err := tx.InsertHold(ctx, h); err != nil {
					return err
				}
			}
			for _, c := range changes {
				if err := tx.AppendChange(ctx, c); err != nil {
					return err
				}
			}
			for k, t := range touched {
				if err := tx.SetTotal(ctx, k, t); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return storeErr("import", err)
		}
		clear(batch)
		clear(limits)
		clear(holds)
		clear(changes)
		batch, limits, holds, changes, batchBytes = batch[:0], limits[:0], holds[:0], changes[:0], 0
		clear(touched)
		return nil
	}
	lastWallet := walletKey{}
	limitsSeen := false
	var lastHold string
	holdsSeen := false
	held := map[walletKey]decimal.Decimal{} // the active holds' sums
	captures := map[string]string{}         // hold ID -> the entry naming it
	holdKeys := map[idemKey]string{}        // (authority, key) -> hold ID
	// From version 6 the stream carries its changes, checked against
	// its records; before, the changes of its past are made once the
	// records are written.
	withFeed := h.Version >= exportChangeVersion
	feed := newFeedCheck()
	history := newPast()
	changesSeen := false

	var last string
	keys := map[idemKey]string{} // (authority, idempotency key) -> entry ID
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var line importLine
		ok, err := next(&line)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if line.End != nil {
			if h.Version < 2 {
				return lineErr("an end marker in a version %d stream", h.Version)
			}
			if err := decode(&exportTrailer{}); err != nil {
				return err // an entry's fields beside the marker
			}
			if _, err := br.Peek(1); err != io.EOF {
				if err != nil {
					return fmt.Errorf("ledger: import: read: %w", err)
				}
				lineNo++
				return lineErr("data after the end marker")
			}
			if err := seen.check(line.End); err != nil {
				return lineErr("%v", err)
			}
			ended = true
			break
		}
		if line.Change != nil {
			if !withFeed {
				return lineErr("a change in a version %d stream", h.Version)
			}
			if err := decode(&changeLine{}); err != nil {
				return err // other fields beside the change
			}
			c, err := l.checkImportedChange(line.Change)
			if err != nil {
				return lineErr("%v", err)
			}
			if p := feed.change(c); p != "" {
				return lineErr("%s", p)
			}
			changesSeen = true
			seen.Changes++
			if store == nil {
				continue
			}
			if n := len(batch) + len(limits) + len(holds) + len(changes); n >= importBatch {
				if err := flush(); err != nil {
					return err
				}
			}
			changes = append(changes, c)
			batchBytes += EntryOverheadBytes + len(c.AuthorityID) + len(c.Ref)
			continue
		}
		if changesSeen {
			return lineErr("a record after the changes")
		}
		if line.Hold != nil {
			if h.Version < exportHoldVersion {
				return lineErr("a hold in a version %d stream", h.Version)
			}
			if err := decode(&holdLine{}); err != nil {
				return err // other fields beside the hold
			}
			hr, err := l.checkImportedHold(line.Hold, lastHold, captures)
			if err != nil {
				return lineErr("%v", err)
			}
			if hr.IdempotencyKey != "" {
				k := idemKey{hr.AuthorityID, hr.IdempotencyKey}
				if first, dup := holdKeys[k]; dup {
					return lineErr("hold %s reuses idempotency key %q of hold %s", hr.ID, hr.IdempotencyKey, first)
				}
				holdKeys[k] = hr.ID
			}
			if hr.State == HoldActive {
				k := walletKey{hr.UserID, hr.Currency}
				held[k] = held[k].Add(hr.Amount)
				if !l.fits(held[k]) {
					return lineErr("hold %s takes what user %q has held beyond the ledger's precision", hr.ID, hr.UserID)
				}
			}
			if hr.State == HoldCaptured {
				delete(captures, hr.ID) // matched
			}
			lastHold, holdsSeen = hr.ID, true
			seen.countHold(&hr.Hold)
			feed.hold(&hr.Hold)
			history.hold(&hr.Hold)
			if store == nil {
				continue
			}
			size := holdBytes(&NewHold{AuthorityID: hr.AuthorityID, UserID: hr.UserID, Currency: hr.Currency, Reason: hr.Reason,
				Metadata: hr.Metadata, IdempotencyKey: hr.IdempotencyKey}) + len(hr.EntryID)
			if n := len(batch) + len(limits) + len(holds); n > 0 && (n >= importBatch || batchBytes+size > l.cfg.limits.MaxBatchBytes) {
				if err := flush(); err != nil {
					return err
				}
			}
			holds = append(holds, hr)
			batchBytes += size
			continue
		}
		if holdsSeen {
			return lineErr("limits or an entry after the holds")
		}
		if line.Limits != nil {
			if h.Version < exportWalletVersion {
				return lineErr("limits in a version %d stream", h.Version)
			}
			if err := decode(&limitsLine{}); err != nil {
				return err // an entry's fields beside the limits
			}
			sl, err := l.checkImportedLimits(line.Limits)
			if err != nil {
				return lineErr("%v", err)
			}
			k := walletKey{sl.UserID, sl.Currency}
			if limitsSeen && (k.userID < lastWallet.userID || k.userID == lastWallet.userID && k.currency <= lastWallet.currency) {
				return lineErr("limits of user %q in %q out of order", k.userID, k.currency)
			}
			lastWallet, limitsSeen = k, true
			seen.Limits++
			feed.limit(sl)
			history.limit(sl)
			if store == nil {
				continue
			}
			const limitsBytes = EntryOverheadBytes
			if len(batch)+len(limits) > 0 && (len(batch)+len(limits) >= importBatch || batchBytes+limitsBytes > l.cfg.limits.MaxBatchBytes) {
				if err := flush(); err != nil {
					return err
				}
			}
			limits = append(limits, sl)
			batchBytes += limitsBytes + len(sl.UserID) + len(sl.SetBy)
			continue
		}
		if limitsSeen {
			return lineErr("an entry after the limits")
		}
		rec, size, err := l.checkImported(line.exportLine, last, h.Version)
		if err != nil {
			return lineErr("%v", err)
		}
		if rec.HoldID != "" {
			if first, dup := captures[rec.HoldID]; dup {
				return lineErr("entry %s captures hold %s, which entry %s captured", rec.ID, rec.HoldID, first)
			}
			captures[rec.HoldID] = rec.ID
		}
		if rec.IdempotencyKey != "" {
			k := idemKey{rec.AuthorityID, rec.IdempotencyKey}
			if first, dup := keys[k]; dup {
				return lineErr("entry %s reuses idempotency key %q of entry %s", rec.ID, rec.IdempotencyKey, first)
			}
			keys[k] = rec.ID
		}
		userKey, pairKey := TotalKey{"", rec.UserID, rec.Currency}, TotalKey{rec.AuthorityID, rec.UserID, rec.Currency}
		user, pair := sums.add(userKey, rec), sums.add(pairKey, rec)
		switch {
		case user.IsNegative() && h.Version < exportWalletVersion:
			// Before limits, no wallet went below zero. (From version 4
			// a floor may allow it; the stream's limits are today's, not
			// those the entry was written under.)
			return lineErr("entry %s takes user %q below zero", rec.ID, rec.UserID)
		case !l.fits(user) || !l.fits(pair):
			return lineErr("entry %s takes a total beyond the ledger's precision", rec.ID)
		case !user.Equal(rec.Balance):
			return lineErr("entry %s records balance %s, but the entries sum to %s", rec.ID, brief(rec.Balance), user)
		case !pair.Equal(rec.AuthorityBalance):
			return lineErr("entry %s records authority balance %s, but the entries sum to %s", rec.ID, brief(rec.AuthorityBalance), pair)
		}
		// The ledger's own sums, equal to the recorded balances: where
		// validation normalised an amount, the balances follow it, and
		// an exponent no store need hold never reaches one.
		rec.Balance, rec.AuthorityBalance = user, pair
		seen.count(&rec)
		if withFeed {
			feed.entry(&rec)
		} else if store != nil {
			history.use(&rec)
		}
		last = rec.ID
		if store == nil {
			continue
		}
		// What the entry adds to the transaction, counted as
		// CreateEntries counts a batch, plus the totals it writes.
		cost := func() int {
			n := size
			for _, k := range [2]TotalKey{userKey, pairKey} {
				if _, ok := touched[k]; !ok {
					n += totalBytes(k)
				}
			}
			return n
		}
		if len(batch) > 0 && (len(batch) == importBatch || batchBytes+cost() > l.cfg.limits.MaxBatchBytes) {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, rec)
		batchBytes += cost()
		touched[userKey], touched[pairKey] = sums[userKey], sums[pairKey]
	}
	if h.Version >= 2 && !ended {
		return fmt.Errorf("ledger: import: stream ends after line %d without its end marker (cut short?): %w", lineNo, ErrInvalid)
	}
	for _, id := range slices.Sorted(maps.Keys(captures)) {
		return fmt.Errorf("ledger: import: entry %s captures hold %s, which the stream does not hold captured by it: %w", captures[id], id, ErrInvalid)
	}
	if withFeed {
		if ps := feed.finish(); len(ps) > 0 {
			return fmt.Errorf("ledger: import: the stream's changes disagree with its records: %s: %w", strings.Join(ps[:min(len(ps), 10)], "; "), ErrInvalid)
		}
	}
	if err := flush(); err != nil {
		return err
	}
	// The held amounts go into the wallets' totals, after their entries.
	for _, k := range slices.SortedFunc(maps.Keys(held), func(a, b walletKey) int {
		return cmp.Or(cmp.Compare(a.userID, b.userID), cmp.Compare(a.currency, b.currency))
	}) {
		if store == nil {
			break
		}
		tk := TotalKey{"", k.userID, k.currency}
		t := sums[tk]
		t.Held = held[k]
		if len(touched) == importBatch {
			if err := flush(); err != nil {
				return err
			}
		}
		touched[tk] = t
	}
	if err := flush(); err != nil {
		return err
	}
	if store != nil && !withFeed {
		if err := l.importPast(ctx, store, history); err != nil {
			return err
		}
	}
	if store != nil && last != "" {
		l.observe(last) // the importer leads every lane
	}
	return nil
}

// check says how the end marker m disagrees with e, what the stream
// holds.
func (e *exportEnd) check(m *exportEnd) error {
	switch {
	case m.Entries != e.Entries:
		return fmt.Errorf("the end marker counts %d entries, the stream holds %d", m.Entries, e.Entries)
	case m.Items != e.Items:
		return fmt.Errorf("the end marker counts %d items, the stream holds %d", m.Items, e.Items)
	case m.UsedItems != e.UsedItems:
		return fmt.Errorf("the end marker counts %d used items, the stream holds %d", m.UsedItems, e.UsedItems)
	case m.Limits != e.Limits:
		return fmt.Errorf("the end marker counts %d limits, the stream holds %d", m.Limits, e.Limits)
	case m.Holds != e.Holds:
		return fmt.Errorf("the end marker counts %d holds, the stream holds %d", m.Holds, e.Holds)
	case m.Changes != e.Changes:
		return fmt.Errorf("the end marker counts %d changes, the stream holds %d", m.Changes, e.Changes)
	case !m.Held.Equal(e.Held):
		return fmt.Errorf("the end marker's held is %s, but the active holds sum to %s", brief(m.Held), brief(e.Held))
	case !m.Total.Equal(e.Total):
		return fmt.Errorf("the end marker's total is %s, but the entries sum to %s", brief(m.Total), brief(e.Total))
	}
	return nil
}

// totalBytes is what writing the total k counts towards
// Limits.MaxBatchBytes in an import.
func totalBytes(k TotalKey) int {
	return EntryOverheadBytes + len(k.AuthorityID) + len(k.UserID) + len(k.Currency)
}

// checkImported validates one exported entry against the ledger's rules
// and turns it into a record; it also returns the entry's size as
// Limits.MaxBatchBytes counts it.
func (l *Ledger) checkImported(line exportLine, last string, version int) (Record, int, error) {
	nanos, _, ok := ParseEntryID(line.ID)
	switch {
	case !ok:
		return Record{}, 0, fmt.Errorf("malformed entry ID %q", line.ID)
	case line.ID <= last:
		return Record{}, 0, fmt.Errorf("entry %s does not sort after %s", line.ID, last)
	case nanos != unixNano(line.CreatedOn) || line.CreatedOn.IsZero():
		return Record{}, 0, fmt.Errorf("entry %s: created_on %v disagrees with its ID", line.ID, line.CreatedOn)
	}
	if version < exportHoldVersion && line.HoldID != "" {
		return Record{}, 0, fmt.Errorf("entry %s: a hold_id in a version %d stream", line.ID, version)
	}
	if version < exportWalletVersion && (line.Currency != "" || line.Metadata != nil || line.TransferID != "" ||
		line.Reverses != "" || line.ReversedBy != "" || line.Item != nil && line.Item.Revoked) {
		return Record{}, 0, fmt.Errorf("entry %s: currency, metadata, transfer or reversal fields in a version %d stream", line.ID, version)
	}
	for _, link := range []string{line.TransferID, line.Reverses, line.ReversedBy, line.HoldID} {
		if _, _, ok := ParseEntryID(link); link != "" && !ok {
			return Record{}, 0, fmt.Errorf("entry %s: malformed linked entry ID %q", line.ID, link)
		}
	}
	if line.Item != nil && line.Item.Revoked && line.Item.Used {
		return Record{}, 0, fmt.Errorf("entry %s: an item both used and revoked", line.ID)
	}
	ne := NewEntry{
		AuthorityID: line.AuthorityID, UserID: line.UserID, Amount: line.Amount, Reason: line.Reason,
		IdempotencyKey: line.IdempotencyKey, Currency: line.Currency, Metadata: line.Metadata,
	}
	if line.Item != nil {
		ne.Item = &Item{Name: line.Item.Name, Data: line.Item.Data}
	}
	ne, err := l.checkNewEntry(ne)
	if err != nil {
		return Record{}, 0, fmt.Errorf("entry %s: %w", line.ID, err)
	}
	size := entryBytes(&ne)
	var useKey string
	if ne.Item != nil {
		use, err := l.checkImportedUse(line.Item, version)
		if err != nil {
			return Record{}, 0, fmt.Errorf("entry %s: %w", line.ID, err)
		}
		ne.Item.Used, ne.Item.UsedOn, ne.Item.UsedBy, useKey = line.Item.Used, use.At, use.AuthorityID, use.IdempotencyKey
		ne.Item.Revoked = line.Item.Revoked
		size += len(use.AuthorityID) + len(use.IdempotencyKey)
	}
	return Record{
		Entry: Entry{
			ID: line.ID, AuthorityID: ne.AuthorityID, UserID: ne.UserID, CreatedOn: time.Unix(0, nanos).UTC(),
			Amount: ne.Amount, Reason: ne.Reason, Item: ne.Item, Balance: line.Balance,
			Currency: ne.Currency, Metadata: ne.Metadata, TransferID: line.TransferID, Reverses: line.Reverses, ReversedBy: line.ReversedBy,
			HoldID: line.HoldID,
		},
		IdempotencyKey:    ne.IdempotencyKey,
		AuthorityBalance:  line.AuthorityBalance,
		UseIdempotencyKey: useKey,
	}, size, nil
}

// checkImportedUse validates an exported item's use as UseItem would
// have recorded it: none on an unused item; on a used one, both UsedOn
// (within the range entry times span) and UsedBy or neither (a use
// recorded before uses were), and a key only with them.
func (l *Ledger) checkImportedUse(it *exportItem, version int) (ItemUse, error) {
	u := ItemUse{AuthorityID: it.UsedBy, At: it.UsedOn, IdempotencyKey: it.UseIdempotencyKey}
	switch {
	case u == ItemUse{}:
		return u, nil
	case version < exportUseVersion:
		return ItemUse{}, fmt.Errorf("an item use in a version %d stream (uses are recorded from version %d)", version, exportUseVersion)
	case !it.Used:
		return ItemUse{}, errors.New("an unused item with a use")
	case u.At.IsZero() || u.AuthorityID == "":
		return ItemUse{}, errors.New("an item use needs both used_on and used_by")
	case !time.Unix(0, unixNano(u.At)).Equal(u.At):
		return ItemUse{}, fmt.Errorf("used_on %v is outside the years 1970 to 2262 that entry times span", u.At)
	}
	u.At = u.At.UTC()
	if err := l.checkID("Item.UsedBy", u.AuthorityID); err != nil {
		return ItemUse{}, err
	}
	if u.IdempotencyKey != "" {
		if err := l.checkID("UseIdempotencyKey", u.IdempotencyKey); err != nil {
			return ItemUse{}, err
		}
	}
	return u, nil
}

// checkImportedLimits validates a limits line.
func (l *Ledger) checkImportedLimits(e *exportLimits) (StoredLimits, error) {
	lim, err := l.checkLimits(WalletLimits{UserID: e.UserID, Currency: e.Currency, Floor: e.Floor, Cap: e.Cap})
	if err != nil {
		return StoredLimits{}, err
	}
	if err := l.checkID("SetBy", e.SetBy); err != nil {
		return StoredLimits{}, err
	}
	if e.SetOn.IsZero() || !time.Unix(0, unixNano(e.SetOn)).Equal(e.SetOn) {
		return StoredLimits{}, fmt.Errorf("set_on %v is outside the years 1970 to 2262", e.SetOn)
	}
	return StoredLimits{WalletLimits: lim, SetBy: e.SetBy, SetOn: e.SetOn.UTC()}, nil
}

// checkImportedHold validates an exported hold as [Ledger.Hold] and its
// settlement would have written it; captures maps the hold IDs that
// entries name to those entries.
func (l *Ledger) checkImportedHold(e *exportHold, last string, captures map[string]string) (HoldRecord, error) {
	nanos, _, ok := ParseEntryID(e.ID)
	switch {
	case !ok:
		return HoldRecord{}, fmt.Errorf("malformed hold ID %q", e.ID)
	case e.ID <= last:
		return HoldRecord{}, fmt.Errorf("hold %s does not sort after %s", e.ID, last)
	case nanos != unixNano(e.CreatedOn) || e.CreatedOn.IsZero():
		return HoldRecord{}, fmt.Errorf("hold %s: created_on %v disagrees with its ID", e.ID, e.CreatedOn)
	}
	nh, err := l.checkNewHold(NewHold{
		AuthorityID: e.AuthorityID, UserID: e.UserID, Currency: e.Currency, Amount: e.Amount, Reason: e.Reason,
		Expires: e.Expires, Metadata: e.Metadata, IdempotencyKey: e.IdempotencyKey,
	})
	if err != nil {
		return HoldRecord{}, fmt.Errorf("hold %s: %w", e.ID, err)
	}
	if !e.Expires.IsZero() && !time.Unix(0, unixNano(e.Expires)).Equal(e.Expires) {
		return HoldRecord{}, fmt.Errorf("hold %s: expires %v is outside the years 1970 to 2262", e.ID, e.Expires)
	}
	closed := e.ClosedOn
	switch e.State {
	case HoldActive:
		if !closed.IsZero() || e.EntryID != "" {
			return HoldRecord{}, fmt.Errorf("hold %s: active, with closed_on or entry_id", e.ID)
		}
	case HoldCaptured, HoldReleased, HoldExpired:
		if closed.IsZero() || !time.Unix(0, unixNano(closed)).Equal(closed) {
			return HoldRecord{}, fmt.Errorf("hold %s: %s, with closed_on %v outside the years 1970 to 2262", e.ID, e.State, closed)
		}
		closed = closed.UTC()
		if e.State == HoldExpired && (nh.Expires.IsZero() || !closed.Equal(nh.Expires)) {
			return HoldRecord{}, fmt.Errorf("hold %s: expired, but closed_on %v is not its expires", e.ID, closed)
		}
		if (e.State == HoldCaptured) != (e.EntryID != "") {
			return HoldRecord{}, fmt.Errorf("hold %s: %s, with entry_id %q", e.ID, e.State, e.EntryID)
		}
		if e.State == HoldCaptured && captures[e.ID] != e.EntryID {
			return HoldRecord{}, fmt.Errorf("hold %s: captured by entry %s, which does not name it", e.ID, e.EntryID)
		}
	default:
		return HoldRecord{}, fmt.Errorf("hold %s: state %d is not a hold state", e.ID, e.State)
	}
	return HoldRecord{
		Hold: Hold{
			ID: e.ID, AuthorityID: nh.AuthorityID, UserID: nh.UserID, Currency: nh.Currency, Amount: nh.Amount,
			Reason: nh.Reason, Metadata: nh.Metadata, CreatedOn: time.Unix(0, nanos).UTC(), Expires: nh.Expires,
			State: e.State, ClosedOn: closed, EntryID: e.EntryID,
		},
		IdempotencyKey: nh.IdempotencyKey,
	}, nil
}

// checkImportedChange validates an exported change and turns it into a
// record; feedCheck then checks it against the stream's records.
func (l *Ledger) checkImportedChange(e *exportChange) (ChangeRecord, error) {
	c := ChangeRecord{Kind: e.Kind, At: e.At.UTC(), AuthorityID: e.AuthorityID, Ref: e.Ref}
	if !e.Kind.valid() {
		return c, fmt.Errorf("change of unknown kind %q", truncated(string(e.Kind)))
	}
	untimedUse := e.Kind == ChangeItemUsed && e.At.IsZero() && e.AuthorityID == ""
	if !untimedUse {
		if e.At.IsZero() || !time.Unix(0, unixNano(e.At)).Equal(e.At) {
			return c, fmt.Errorf("%s change at %v, outside the years 1970 to 2262", e.Kind, e.At)
		}
		if err := l.checkID("AuthorityID", e.AuthorityID); err != nil {
			return c, fmt.Errorf("%s change: %w", e.Kind, err)
		}
	}
	if untimedUse {
		c.At = time.Time{}
	}
	if e.Kind == ChangeLimits {
		if e.Ref != "" || e.Limits == nil {
			return c, errors.New("a limits change holds its limits (user_id, currency, floor, cap) and no ref")
		}
		lim, err := l.checkLimits(WalletLimits{UserID: e.Limits.UserID, Currency: e.Limits.Currency, Floor: e.Limits.Floor, Cap: e.Limits.Cap})
		if err != nil {
			return c, fmt.Errorf("limits change: %w", err)
		}
		c.Limits = &lim
		return c, nil
	}
	if e.Limits != nil {
		return c, fmt.Errorf("a %s change with limits", e.Kind)
	}
	if _, _, ok := ParseEntryID(e.Ref); !ok {
		return c, fmt.Errorf("%s change: malformed ref %q", e.Kind, truncated(e.Ref))
	}
	return c, nil
}

// importPast writes the changes of the past of an imported stream that
// carried none (version 5 and before), once its records are written: it
// reads the entries back in ID order and merges them with the uses,
// limits and holds (see past).
func (l *Ledger) importPast(ctx context.Context, store Store, history *past) error {
	var out []ChangeRecord
	write := func() error {
		if len(out) == 0 {
			return nil
		}
		err := store.Update(ctx, func(tx Tx) error {
			for _, c := range out {
				if err := tx.AppendChange(ctx, c); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return storeErr("import: write the changes of the past", err)
		}
		clear(out)
		out = out[:0]
		return nil
	}
	start := ""
	for {
		var page []Record
		err := store.View(ctx, func(tx ReadTx) error {
			page = page[:0]
			for r, err := range tx.Entries(ctx, Scan{Start: start}) {
				if err != nil {
					return err
				}
				page = append(page, r)
				if len(page) == importBatch {
					break
				}
			}
			return nil
		})
		if err != nil {
			return storeErr("import: read entries back", err)
		}
		for i := range page {
			out = history.entry(&page[i], out)
			if len(out) >= importBatch {
				if err := write(); err != nil {
					return err
				}
			}
		}
		if len(page) < importBatch {
			break
		}
		start = page[len(page)-1].ID + "\x00"
	}
	out = history.rest(out)
	return write()
}
