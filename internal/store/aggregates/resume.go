package aggregates

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/bits"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/window"
)

// A restart used to rebuild the rules state by reading every hourly row of
// the week (four million at full scale), which under load took most of the
// ten seconds a restart may take. Instead, the engine now and then stores
// an image of the state's week sums (rules.State.Weeks) right after a flush
// and a close, numbered with that flush; every later flush logs its deltas
// to minutes already evaluated (late_deltas). Resuming at L from an image
// taken at X is then
//
//	image(X) + late deltas since its flush (minutes of B(X) and E(X))
//	         + minutes entering B and E between X and L
//	         − minutes leaving them,
//
// all exact integer sums: the same Snapshot a full read gives, from about
// a hundred thousand image records and a few hours of minutes.

// ResumeWithin is how far behind the checkpoint an image may be and still
// be used: the minutes it needs are then well within what pruning keeps
// (7 days and an hour and a day), and reading them is cheaper than the week.
const ResumeWithin = 12 * 60

// queueLate logs the deltas to minutes at or before evaluated, with the
// flush's number.
func (s *Store) queueLate(qb *pgx.Batch, deltas []window.Delta, evaluated window.Minute) {
	var cols *aggColumns
	for _, d := range deltas {
		if d.Minute > evaluated {
			continue
		}
		if cols == nil {
			cols = columns(8)
		}
		cols.add(d.Merchant, d.Minute.Start(), d.Agg)
	}
	if cols == nil {
		return
	}
	qb.Queue(fmt.Sprintf(`INSERT INTO %s (seq, merchant_id, minute, approvals, approved_amount, cancels, canceled_amount)
		SELECT currval('%s'), * FROM unnest($1::bigint[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])`,
		s.db.Table("late_deltas"), s.db.Table("flush_seq")), cols.args()...)
}

// SaveRulesResume stores the image of st, taken right after the flush
// numbered seq (and the close of st.LastClosed() that followed it), as the
// checkpoint's writer cp: EncodeRulesImage, then StoreRulesImage.
func (s *Store) SaveRulesResume(ctx context.Context, cp Checkpoint, seq int64, p rules.Params, st *rules.State) (int, error) {
	return s.StoreRulesImage(ctx, cp, s.EncodeRulesImage(seq, p, st))
}

// RulesImage is a rules state encoded for rules_resume.
type RulesImage struct {
	LastClosed window.Minute
	// Seq numbers the flush the image was taken right after.
	Seq       int64
	Merchants int
	exposure  int
	data      []byte
}

// EncodeRulesImage encodes st, taken right after the flush numbered seq
// (and the close of st.LastClosed() that followed it). It only reads st:
// the caller must not change st meanwhile, and may store the image later.
func (s *Store) EncodeRulesImage(seq int64, p rules.Params, st *rules.State) RulesImage {
	data, n := encodeImage(st, p.Volume.LargeDailyAmount)
	return RulesImage{LastClosed: st.LastClosed(), Seq: seq, Merchants: n, exposure: p.ExposureMinutes, data: data}
}

// StoreRulesImage stores img as the checkpoint's writer cp: a writer that
// lost its claim is refused, and an image never replaces a newer one. The
// late deltas every image now stored has covered are deleted with it. It
// returns the image's size in bytes.
func (s *Store) StoreRulesImage(ctx context.Context, cp Checkpoint, img RulesImage) (int, error) {
	err := s.db.Tx(ctx, func(tx pgx.Tx) error {
		ct, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %[1]s AS r (slot, last_closed, seq, exposure_minutes, business_timezone, merchants, data)
			SELECT $1, $3, $4, $5, $6, $7, $8 FROM %[2]s c WHERE c.slot = $1 AND c.epoch = $2
			ON CONFLICT (slot) DO UPDATE SET last_closed = EXCLUDED.last_closed, seq = EXCLUDED.seq, exposure_minutes = EXCLUDED.exposure_minutes,
				business_timezone = EXCLUDED.business_timezone, merchants = EXCLUDED.merchants, data = EXCLUDED.data, written_at = now()
			WHERE r.seq < EXCLUDED.seq`, s.db.Table("rules_resume"), s.db.Table("checkpoint")),
			cp.Slot, cp.Epoch, img.LastClosed.Start(), img.Seq, img.exposure, s.cal.Location().String(), img.Merchants, img.data)
		if err != nil {
			return err
		}
		if ct.RowsAffected() != 1 {
			return fmt.Errorf("checkpoint for slot %s (epoch %d) is claimed by a newer writer, or a newer image is stored: %w", cp.Slot, cp.Epoch, ErrFenced)
		}
		_, err = tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE seq <= (SELECT min(seq) FROM %s)`, s.db.Table("late_deltas"), s.db.Table("rules_resume")))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("storing the rules image at %s: %w", img.LastClosed, err)
	}
	return len(img.data), nil
}

// ResumeRulesSnapshot is RulesSnapshot with open minutes, for the
// checkpoint's writer resuming at lastClosed: from the slot's rules image
// when one is usable, else (none yet, too old, another exposure window or
// time zone, unreadable) by reading the week. It returns the closed minute
// the image was taken at, or 0 when it read the week.
func (s *Store) ResumeRulesSnapshot(ctx context.Context, slot string, lastClosed window.Minute, p rules.Params, log *slog.Logger) (rules.Snapshot, window.Minute, error) {
	exposureMinutes := p.ExposureMinutes
	snap, x, err := s.resume(ctx, slot, lastClosed, p, log)
	if err == nil {
		return snap, x, nil
	}
	switch {
	case errors.Is(err, errNoImage):
		log.Info("reading the week for the rules state", "reason", err)
	default:
		log.Warn("the rules image cannot be used; reading the week instead", "err", err)
	}
	snap, err = s.RulesSnapshot(ctx, lastClosed, true, exposureMinutes)
	return snap, 0, err
}

var errNoImage = errors.New("no usable rules image")

func (s *Store) resume(ctx context.Context, slot string, l window.Minute, p rules.Params, log *slog.Logger) (rules.Snapshot, window.Minute, error) {
	exposureMinutes := p.ExposureMinutes
	snap := rules.Snapshot{LastClosed: l, ExposureMinutes: exposureMinutes}
	var at time.Time
	var seq int64
	var expo int
	var tz string
	var data []byte
	err := s.db.Pool().QueryRow(ctx, fmt.Sprintf(`SELECT last_closed, seq, exposure_minutes, business_timezone, data FROM %s WHERE slot = $1`,
		s.db.Table("rules_resume")), slot).Scan(&at, &seq, &expo, &tz, &data)
	if errors.Is(err, pgx.ErrNoRows) {
		return snap, 0, errNoImage
	}
	if err != nil {
		return snap, 0, fmt.Errorf("reading the rules image: %w", err)
	}
	x := window.MinuteOf(at)
	switch {
	case x > l || l-x > ResumeWithin:
		return snap, 0, fmt.Errorf("%w: taken at %s, resuming at %s", errNoImage, x, l)
	case expo != exposureMinutes:
		return snap, 0, fmt.Errorf("%w: taken with an exposure window of %d minutes, now %d", errNoImage, expo, exposureMinutes)
	case tz != s.cal.Location().String():
		return snap, 0, fmt.Errorf("%w: taken in time zone %s, now %s", errNoImage, tz, s.cal.Location())
	}
	// B(m) = [m−10139, m−60]; E(m) = [m−expo+1, m].
	bx := [2]window.Minute{x - rules.HourMinutes - rules.BaselineMinutes + 1, x - rules.HourMinutes}
	ex := [2]window.Minute{x - window.Minute(exposureMinutes) + 1, x}
	in := func(r [2]window.Minute, m window.Minute) bool { return m >= r[0] && m <= r[1] }
	var late, entering, leavingB, leavingE []window.Delta
	var vol *rules.VolumeDay
	var volLDA int64
	w := newWeekSums(nil, nil, s.cal.Location(), 0)
	g, gctx := errgroup.WithContext(ctx)
	// Decoded while the server answers the reads below.
	g.Go(func() error {
		rest, err := w.decode(data)
		if err == nil {
			vol, volLDA, err = decodeVolume(rest)
		}
		if err != nil {
			return fmt.Errorf("decoding the rules image taken at %s: %w", x, err)
		}
		return nil
	})
	read := func(into *[]window.Delta, from, to window.Minute) {
		if from >= to {
			return
		}
		g.Go(func() error {
			var err error
			*into, err = s.Minutes(gctx, from, to)
			return err
		})
	}
	g.Go(func() error {
		var err error
		snap.Recent, err = s.recentMinutes(gctx, l, true)
		return err
	})
	// Late deltas to B(x) and E(x), and to the 7 days of volume curves
	// before x's business day (which begin up to a day before B(x)).
	curvesFrom, _ := rules.CurveWeek(s.cal, s.cal.Day(x))
	lateFrom := min(bx[0], curvesFrom)
	g.Go(func() error {
		var err error
		late, err = s.lateSince(gctx, seq, lateFrom, x)
		return err
	})
	// Minutes entering B, (x−60, l−60], and E, (x, l]: one read, unless
	// the recent minutes read anyway hold them all (an image less than two
	// hours old: after a peak those are the busiest minutes of the day).
	enterFrom := x - rules.HourMinutes + 1
	fromRecent := enterFrom >= l-rules.RecentMinutes+1
	if !fromRecent {
		read(&entering, enterFrom, l+1)
	}
	// Minutes leaving them: B(x) \ B(l) and E(x) \ E(l) (a short exposure
	// window may have left whole since x).
	read(&leavingB, bx[0], min(bx[1], l-rules.HourMinutes-rules.BaselineMinutes)+1)
	if exposureMinutes > 0 {
		read(&leavingE, ex[0], min(ex[1], l-window.Minute(exposureMinutes))+1)
	}
	if err := g.Wait(); err != nil {
		return snap, 0, err
	}
	if fromRecent {
		entering = snap.Recent // ordered by minute: those after l are open
		lo, _ := slices.BinarySearchFunc(entering, enterFrom, func(d window.Delta, m window.Minute) int { return cmp.Compare(d.Minute, m) })
		hi, _ := slices.BinarySearchFunc(entering, l+1, func(d window.Delta, m window.Minute) int { return cmp.Compare(d.Minute, m) })
		entering = entering[lo:hi]
	}
	bl := [2]window.Minute{l - rules.HourMinutes - rules.BaselineMinutes + 1, l - rules.HourMinutes}
	el := [2]window.Minute{l - window.Minute(exposureMinutes) + 1, l}
	// Today before H: the image's, when l is on x's business day (then
	// the minutes entering B are today's too); else only those entering.
	today := s.cal.DayStart(l)
	if today != s.cal.DayStart(x) {
		for i := range w.accs {
			w.accs[i].ta, w.accs[i].tc = 0, 0
		}
	}
	for _, d := range late {
		inB := in(bx, d.Minute)
		w.addMinute(d, 1, inB, inB && d.Minute >= today, exposureMinutes > 0 && in(ex, d.Minute))
	}
	for _, d := range entering {
		inB := d.Minute > bx[1] && in(bl, d.Minute)
		w.addMinute(d, 1, inB, inB && d.Minute >= today, exposureMinutes > 0 && d.Minute > x && in(el, d.Minute))
	}
	for _, d := range leavingB {
		w.addMinute(d, -1, true, false, false)
	}
	for _, d := range leavingE {
		w.addMinute(d, -1, false, false, true)
	}
	if err := w.checkNonNegative(); err != nil {
		return snap, 0, fmt.Errorf("the rules image taken at %s does not add up: %w", x, err)
	}
	w.fill(&snap)
	if vol != nil {
		if why := s.resumeVolume(vol, volLDA, p.Volume.LargeDailyAmount, x, l, late, entering); why != "" {
			log.Info("the volume curves are read at the first close", "reason", why)
		} else {
			snap.Volume = vol
		}
	}
	return snap, x, nil
}

// resumeVolume brings the image's volume day, taken at x, to l: the late
// deltas since the image and the minutes closed since x, added as the live
// state adds them (the day's large merchants stay those it was loaded
// with, as they do in a session that did not stop). It returns why the
// day cannot be used instead (the first close then reads it): l+1 is in
// another business day, or the large threshold changed.
func (s *Store) resumeVolume(vol *rules.VolumeDay, imageLDA, lda int64, x, l window.Minute, late, entering []window.Delta) string {
	switch {
	case !vol.Day.Equal(s.cal.Day(l + 1)):
		return fmt.Sprintf("the image holds %s, the next minute is on %s", vol.Day.Format(time.DateOnly), s.cal.Day(l+1).Format(time.DateOnly))
	case imageLDA != lda:
		return fmt.Sprintf("large_daily_amount was %d, now %d", imageLDA, lda)
	}
	for _, d := range late {
		vol.Add(s.cal, d.Minute, d.Merchant, d.ApprovedAmount)
	}
	for _, d := range entering {
		if d.Minute > x && d.Minute <= l {
			vol.Add(s.cal, d.Minute, d.Merchant, d.ApprovedAmount)
		}
	}
	return ""
}

// lateSince reads the deltas logged after flush seq to minutes in [from, to].
func (s *Store) lateSince(ctx context.Context, seq int64, from, to window.Minute) ([]window.Delta, error) {
	return s.readDeltas(ctx, "reading late deltas", fmt.Sprintf(`SELECT merchant_id, minute, approvals, approved_amount, cancels, canceled_amount
		FROM %s WHERE seq > $1 AND minute >= $2 AND minute <= $3`, s.db.Table("late_deltas")), seq, from.Start(), to.Start())
}

// addMinute adds sign × d to merchant d's sums over B (with its hour of
// the day) when inB, to today's when inT, and its approved amount to the
// exposure when inE.
func (w *weekSums) addMinute(d window.Delta, sign int64, inB, inT, inE bool) {
	if !inB && !inE {
		return
	}
	i := w.slot(d.Merchant)
	a := &w.accs[i]
	if inB {
		a.a += sign * d.Approvals
		a.c += sign * d.Cancels
		w.addHour(i, d.Minute.Start().In(w.loc).Hour(), sign*d.Approvals, sign*d.Cancels)
	}
	if inT {
		a.ta += sign * d.Approvals
		a.tc += sign * d.Cancels
	}
	if inE {
		a.expo, _ = window.SatAdd(a.expo, sign*d.ApprovedAmount)
	}
}

// checkNonNegative refuses sums below zero: counts and amounts are never
// negative, so one would mean the image and the sink disagree.
func (w *weekSums) checkNonNegative() error {
	for i, a := range w.accs {
		if a.a < 0 || a.c < 0 || a.expo < 0 || a.ta < 0 || a.tc < 0 || a.ta > a.a || a.tc > a.c {
			return fmt.Errorf("merchant %d: %d approvals (%d today), %d cancels (%d today), %d KRW exposure", w.ids[i], a.a, a.ta, a.c, a.tc, a.expo)
		}
	}
	for h := range w.hod {
		for i, v := range w.hod[h] {
			if v[0] < 0 || v[1] < 0 {
				return fmt.Errorf("merchant %d at hour %d of the day: %d approvals, %d cancels", w.ids[i], h, v[0], v[1])
			}
		}
	}
	return nil
}

// imageVersion leads an encoded image; another value is not read. Images
// before version 3 hold no sums of today and are not used: the first
// restart after the upgrade reads the week.
const imageVersion = 3

// encodeImage encodes every merchant of st as varints: merchant, B's
// approvals and cancels, exposure, today's approvals and cancels before H,
// a 24-bit mask of the hours of the day
// with sums, then each such hour's approvals and cancels; then the loaded
// volume day (encodeVolume). It returns the bytes and the number of
// merchants.
func encodeImage(st *rules.State, largeDailyAmount int64) ([]byte, int) {
	buf := make([]byte, 0, 64*st.Merchants()+16)
	buf = append(buf, imageVersion)
	buf = binary.AppendUvarint(buf, uint64(st.Merchants()))
	n := 0
	for w := range st.Weeks {
		buf = binary.AppendVarint(buf, w.Merchant)
		buf = binary.AppendVarint(buf, w.Approvals)
		buf = binary.AppendVarint(buf, w.Cancels)
		buf = binary.AppendVarint(buf, w.Exposure)
		buf = binary.AppendVarint(buf, w.TodayApprovals)
		buf = binary.AppendVarint(buf, w.TodayCancels)
		var mask uint32
		for h, v := range w.HourOfDay {
			if v != ([2]int32{}) {
				mask |= 1 << h
			}
		}
		buf = binary.AppendUvarint(buf, uint64(mask))
		for h, v := range w.HourOfDay {
			if mask&(1<<h) != 0 {
				buf = binary.AppendVarint(buf, int64(v[0]))
				buf = binary.AppendVarint(buf, int64(v[1]))
			}
		}
		n++
	}
	if vd, ok := st.Volume(); ok {
		buf = encodeVolume(buf, vd, largeDailyAmount)
	} else {
		buf = binary.AppendUvarint(buf, 0)
	}
	return buf, n
}

// encodeVolume appends the number of curves (0: none), and when there are
// any the day (days since 1970-01-01), the large threshold they were
// chosen with, then per merchant in ascending order: merchant, Sum7,
// today's amount, the 1440 same-time amounts and the 7 × 96 quarter-hour
// amounts.
func encodeVolume(buf []byte, vd rules.VolumeDay, largeDailyAmount int64) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(vd.Curves)))
	if len(vd.Curves) == 0 {
		return buf
	}
	buf = binary.AppendVarint(buf, vd.Day.Unix()/86400)
	buf = binary.AppendVarint(buf, largeDailyAmount)
	for _, id := range slices.Sorted(maps.Keys(vd.Curves)) {
		c := vd.Curves[id]
		buf = binary.AppendVarint(buf, id)
		buf = binary.AppendVarint(buf, c.Sum7)
		buf = binary.AppendVarint(buf, vd.Today[id])
		for _, a := range c.PerMinute7 {
			buf = binary.AppendVarint(buf, a)
		}
		for k := range c.PerDay {
			for _, a := range c.PerDay[k] {
				buf = binary.AppendVarint(buf, a)
			}
		}
	}
	return buf
}

// varints reads varints from the front of data; bad is set once one is
// missing.
type varints struct {
	data []byte
	bad  bool
}

func (r *varints) uv() uint64 {
	v, k := binary.Uvarint(r.data)
	if k <= 0 {
		r.bad = true
		return 0
	}
	r.data = r.data[k:]
	return v
}

func (r *varints) sv() int64 {
	v, k := binary.Varint(r.data)
	if k <= 0 {
		r.bad = true
		return 0
	}
	r.data = r.data[k:]
	return v
}

// decodeVolume reads what encodeVolume wrote (nil: no curves), to the end
// of data.
func decodeVolume(data []byte) (*rules.VolumeDay, int64, error) {
	r := &varints{data: data}
	n := r.uv()
	if r.bad || n > uint64(len(r.data)) {
		return nil, 0, errors.New("truncated volume curves")
	}
	if n == 0 {
		if len(r.data) != 0 {
			return nil, 0, errors.New("trailing bytes after the image")
		}
		return nil, 0, nil
	}
	day, lda := r.sv(), r.sv()
	vd := &rules.VolumeDay{Day: time.Unix(day*86400, 0).UTC(), Curves: make(map[int64]*rules.Curve, n), Today: map[int64]int64{}}
	for range n {
		id, c := r.sv(), &rules.Curve{}
		c.Sum7 = r.sv()
		if today := r.sv(); today != 0 {
			vd.Today[id] = today
		}
		for i := range c.PerMinute7 {
			c.PerMinute7[i] = r.sv()
		}
		for k := range c.PerDay {
			for q := range c.PerDay[k] {
				c.PerDay[k][q] = r.sv()
			}
		}
		if r.bad {
			return nil, 0, errors.New("truncated volume curves")
		}
		vd.Curves[id] = c
	}
	if len(r.data) != 0 {
		return nil, 0, errors.New("trailing bytes after the image")
	}
	return vd, lda, nil
}

// decode adds an encoded image's merchants to w and returns what follows
// them.
func (w *weekSums) decode(data []byte) ([]byte, error) {
	switch {
	case len(data) == 0 || data[0] < 1 || data[0] > imageVersion:
		return nil, errors.New("unknown image version")
	case data[0] < imageVersion:
		return nil, fmt.Errorf("image version %d holds no sums of today", data[0])
	}
	r := &varints{data: data[1:]}
	uv, sv := r.uv, r.sv
	n := uv()
	if r.bad || n > uint64(len(r.data)) {
		return nil, errors.New("truncated image")
	}
	w.index = newSlots(int(2 * n))
	for range n {
		m, a, c, expo, ta, tc := sv(), sv(), sv(), sv(), sv(), sv()
		mask := uv()
		if r.bad || mask >= 1<<24 {
			return nil, errors.New("truncated image")
		}
		i := w.slot(m)
		acc := &w.accs[i]
		acc.a, acc.c = acc.a+a, acc.c+c
		acc.expo, _ = window.SatAdd(acc.expo, expo)
		acc.ta, acc.tc = acc.ta+ta, acc.tc+tc
		for mask != 0 {
			h := bits.TrailingZeros64(mask)
			mask &= mask - 1
			ha, hc := sv(), sv()
			if r.bad {
				return nil, errors.New("truncated image")
			}
			w.addHour(i, h, ha, hc)
		}
	}
	if len(r.data) == 0 {
		return nil, errors.New("truncated image")
	}
	return r.data, nil
}
