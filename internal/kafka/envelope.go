// Package kafka holds what capture and workers agree on when source rows
// travel through Kafka: Debezium's change-event envelope (so a topic written
// by Debezium's own PostgreSQL or MySQL connector can be consumed as well,
// and Maxwell's JSON beside it), the watermark records that let workers
// close minutes, and the partitioners that tell a worker which merchants its
// partitions hold.
package kafka

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Change is one row change in Debezium's change-event envelope.
type Change struct {
	// Op is "c" create, "r" snapshot read, "u" update, "d" delete,
	// "t" truncate or "m" logical decoding message.
	Op string
	// Before and After are column name to value; numbers are json.Number,
	// never float64, so that int64 money survives.
	Before, After map[string]any
	Source        Source
	// TsMS is when the connector processed the change (envelope ts_ms).
	TsMS int64
	// AfterTypes are the semantic types of a MySQL connector's `after`
	// columns (the schema JsonConverter writes with schemas.enable=true),
	// for the columns that have one; nil without a schema, and for
	// PostgreSQL, whose values say enough on their own.
	AfterTypes map[string]FieldType
}

// Source is the envelope's source block: where and when the change was
// committed.
type Source struct {
	Version, Connector, Name, DB, Schema, Table string
	// TsUS is the commit time in Unix microseconds: source.ts_us, or
	// source.ts_ms × 1000 from connectors older than Debezium 2.6.
	TsUS int64
	// LSN is the change's position in the WAL.
	LSN  uint64
	TxID int64
	// Snapshot is "true", "false", "first", "last", "incremental", …;
	// "false" when absent.
	Snapshot string
	// Sequence is source.sequence, a JSON string holding the array
	// ["lastCommitLsn","lsn"]; a null or absent element is 0.
	Sequence [2]uint64
	// File, Pos and Row place a MySQL or MariaDB change in the binlog:
	// Debezium's MySQL connector sends the row event's file and offset and
	// the row within the event, Maxwell its position and xoffset, capture
	// the transaction's end and the row's place in the transaction. File is
	// "" for PostgreSQL.
	File string
	Pos  uint64
	Row  uint64
	// ServerID and GTID are MySQL's server_id and the transaction's GTID,
	// when the producer sends them.
	ServerID int64
	GTID     string
}

// ErrTombstone is returned for a record without a value: the tombstone
// Debezium writes after a delete so that log compaction can drop the key.
var ErrTombstone = errors.New("tombstone: the record has no value")

// Position orders the changes of one source in commit order, so that a
// consumer can skip what an at-least-once redelivery sends again.
type Position struct{ Commit, LSN uint64 }

// Position is {lastCommitLsn, lsn} from source.sequence when it has the
// change's LSN, else source.lsn alone; for MySQL it is BinlogPosition.
func (c Change) Position() Position {
	if c.Source.File != "" {
		// The file name was checked when the change was decoded.
		p, _ := BinlogPosition(c.Source.File, c.Source.Pos, c.Source.Row)
		return p
	}
	if c.Source.Sequence[1] != 0 {
		return Position{Commit: c.Source.Sequence[0], LSN: c.Source.Sequence[1]}
	}
	return Position{LSN: c.Source.LSN}
}

// Less reports whether p comes before q.
func (p Position) Less(q Position) bool {
	return p.Commit < q.Commit || p.Commit == q.Commit && p.LSN < q.LSN
}

// IsZero reports whether p is unknown.
func (p Position) IsZero() bool { return p == Position{} }

// Key is p as bytes that compare in p's order (the sink stores them): the
// commit and the change's LSN, big-endian; empty for the zero position.
func (p Position) Key() []byte {
	if p.IsZero() {
		return []byte{}
	}
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, 16), p.Commit), p.LSN)
}

// PositionOfKey reads Key back.
func PositionOfKey(k []byte) (Position, error) {
	switch len(k) {
	case 0:
		return Position{}, nil
	case 16:
		return Position{Commit: binary.BigEndian.Uint64(k), LSN: binary.BigEndian.Uint64(k[8:])}, nil
	}
	return Position{}, fmt.Errorf("a source position of %d bytes: want 16", len(k))
}

// wireChange is the envelope as read and written, in Debezium's field
// order; pointers tell absent from zero where that matters. Payload is set
// instead of the envelope's fields when JsonConverter wrote it with
// schemas.enable=true.
type wireChange struct {
	Before  map[string]any  `json:"before"`
	After   map[string]any  `json:"after"`
	Source  *wireSource     `json:"source"`
	Op      *string         `json:"op"`
	TsMS    int64           `json:"ts_ms"`
	Schema  json.RawMessage `json:"schema,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

type wireSource struct {
	Version   string       `json:"version"`
	Connector string       `json:"connector"`
	Name      string       `json:"name"`
	TsMS      *int64       `json:"ts_ms"`
	TsUS      *int64       `json:"ts_us"`
	Snapshot  snapshotFlag `json:"snapshot"`
	DB        string       `json:"db"`
	Sequence  *string      `json:"sequence"`
	Schema    string       `json:"schema"`
	Table     string       `json:"table"`
	TxID      int64        `json:"txId"`
	LSN       uint64       `json:"lsn"`
	// Xmin is written as null, as the connector does without xmin
	// tracking, and never read.
	Xmin json.RawMessage `json:"xmin"`
	// MySQL's connector: where the change is in the binlog. Never written
	// here (encodeMySQL writes its own source block).
	ServerID *int64  `json:"server_id,omitempty"`
	GTID     *string `json:"gtid,omitempty"`
	File     *string `json:"file,omitempty"`
	Pos      *uint64 `json:"pos,omitempty"`
	Row      *uint64 `json:"row,omitempty"`
}

// snapshotFlag reads source.snapshot, a string in every Debezium release
// since 1.x but a boolean in the connector documentation's examples.
type snapshotFlag string

func (f *snapshotFlag) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "null":
		return nil
	case "true", "false":
		*f = snapshotFlag(b)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("source.snapshot must be a string or a boolean, got %s", b)
	}
	*f = snapshotFlag(s)
	return nil
}

// DecodeChange reads a record value written by Debezium's JsonConverter,
// with or without schemas, or by EncodeChange.
func DecodeChange(value []byte) (Change, error) {
	if isNull(value) {
		return Change{}, ErrTombstone
	}
	var w wireChange
	if err := decodeJSON(value, &w); err != nil {
		return Change{}, fmt.Errorf("decoding change event: %w", err)
	}
	schema := w.Schema
	if w.Op == nil && w.Payload != nil {
		if isNull(w.Payload) {
			return Change{}, ErrTombstone
		}
		payload := w.Payload
		w = wireChange{}
		if err := decodeJSON(payload, &w); err != nil {
			return Change{}, fmt.Errorf("decoding change event payload: %w", err)
		}
	}
	c, err := w.change()
	if err != nil {
		return Change{}, fmt.Errorf("decoding change event: %w", err)
	}
	if c.MySQL() && len(schema) > 0 && !isNull(schema) {
		if c.AfterTypes, err = afterTypes(schema); err != nil {
			return Change{}, fmt.Errorf("decoding change event schema: %w", err)
		}
	}
	return c, nil
}

func (w *wireChange) change() (Change, error) {
	if w.Op == nil {
		return Change{}, errors.New("op missing")
	}
	if w.Source == nil {
		return Change{}, errors.New("source missing")
	}
	s := w.Source
	c := Change{
		Op: *w.Op, Before: w.Before, After: w.After, TsMS: w.TsMS,
		Source: Source{
			Version: s.Version, Connector: s.Connector, Name: s.Name, DB: s.DB, Schema: s.Schema, Table: s.Table,
			TxID: s.TxID, LSN: s.LSN, Snapshot: string(s.Snapshot),
		},
	}
	switch {
	case s.TsUS != nil:
		c.Source.TsUS = *s.TsUS
	case s.TsMS != nil:
		c.Source.TsUS = *s.TsMS * 1000
	default:
		return Change{}, errors.New("source.ts_ms missing")
	}
	if c.Source.Snapshot == "" {
		c.Source.Snapshot = "false"
	}
	if s.Sequence != nil {
		seq, err := parseSequence(*s.Sequence)
		if err != nil {
			return Change{}, err
		}
		c.Source.Sequence = seq
	}
	if err := s.binlog(&c); err != nil {
		return Change{}, err
	}
	if err := c.check(); err != nil {
		return Change{}, err
	}
	return c, nil
}

// check rejects what no consumer could use, on the way in and out.
func (c *Change) check() error {
	switch c.Op {
	case "c", "r", "u":
		if c.After == nil {
			return fmt.Errorf("op %q without after", c.Op)
		}
	case "d", "t", "m":
	case "":
		return errors.New("op missing")
	default:
		return fmt.Errorf("op %q is none of c, r, u, d, t, m", c.Op)
	}
	// A logical decoding message belongs to no table.
	if c.Source.Table == "" && c.Op != "m" {
		return errors.New("source.table missing")
	}
	return nil
}

func parseSequence(s string) ([2]uint64, error) {
	var seq [2]uint64
	var parts []*string
	if err := json.Unmarshal([]byte(s), &parts); err != nil || len(parts) != 2 {
		return seq, fmt.Errorf("source.sequence %q is not a JSON array of two LSN strings", s)
	}
	for i, p := range parts {
		if p == nil {
			continue
		}
		n, err := strconv.ParseUint(*p, 10, 64)
		if err != nil {
			return seq, fmt.Errorf("source.sequence %q: element %d: %w", s, i, err)
		}
		seq[i] = n
	}
	return seq, nil
}

// EncodeChange writes c as Debezium's PostgreSQL connector does with
// JsonConverter and schemas.enable=false (its MySQL connector for a MySQL
// change), so Debezium consumers can read what capture publishes.
func EncodeChange(c Change) ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("encoding change event: %w", err)
	}
	if c.MySQL() {
		return encodeMySQL(c)
	}
	var seq [2]*string
	for i, n := range c.Source.Sequence {
		if n != 0 {
			s := strconv.FormatUint(n, 10)
			seq[i] = &s
		}
	}
	seqJSON, err := json.Marshal(seq)
	if err != nil {
		return nil, fmt.Errorf("encoding source.sequence: %w", err)
	}
	src := c.Source
	if src.Connector == "" {
		src.Connector = "postgresql"
	}
	if src.Snapshot == "" {
		src.Snapshot = "false"
	}
	tsMS, sequence := floorDiv(src.TsUS, 1000), string(seqJSON)
	out := wireChange{Before: c.Before, After: c.After, Op: &c.Op, TsMS: c.TsMS, Source: &wireSource{
		Version: src.Version, Connector: src.Connector, Name: src.Name, TsMS: &tsMS, TsUS: &src.TsUS, Snapshot: snapshotFlag(src.Snapshot),
		DB: src.DB, Sequence: &sequence, Schema: src.Schema, Table: src.Table, TxID: src.TxID, LSN: src.LSN,
	}}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encoding change event for %s.%s: %w", c.Source.Schema, c.Source.Table, err)
	}
	return b, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// isNull reports whether a record value is absent: Kafka's null, or a JSON
// null from a converter that writes one.
func isNull(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) == 0 || string(b) == "null"
}

// decodeJSON decodes exactly one JSON value, keeping numbers as json.Number.
func decodeJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}
