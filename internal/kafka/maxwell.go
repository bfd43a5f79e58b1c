package kafka

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Maxwell's daemon writes one JSON object per row change of a MySQL or
// MariaDB source (its documentation, "dataformat"):
//
//	{"database":"test","table":"e","type":"insert","ts":1477053217,"xid":23396,
//	 "xoffset":0,"commit":true,"position":"master.000006:800911","data":{…},"old":{…}}
//
// type is insert, update or delete (bootstrap-insert for a table's
// bootstrap, which bootstrap-start and bootstrap-complete bracket; DDL
// records have their own types), ts the event's time in seconds, xoffset
// the row's place in its transaction (absent on the transaction's last
// row, which has commit), position the row event's binlog file and offset
// (with output_binlog_position). DATETIME and TIMESTAMP values are
// "YYYY-MM-DD hh:mm:ss[.ffffff]" text; zero dates are kept as
// "0000-00-00 00:00:00".

// NotRowError is a Maxwell record that carries no row (a bootstrap's start
// or end, a DDL statement): nothing to aggregate, counted as ignored.
type NotRowError struct{ Type, Table string }

func (e *NotRowError) Error() string {
	return fmt.Sprintf("maxwell %q record of %s carries no row", e.Type, e.Table)
}

type wireMaxwell struct {
	Database *string        `json:"database"`
	Table    *string        `json:"table"`
	Type     *string        `json:"type"`
	TS       *int64         `json:"ts"`
	XOffset  *uint64        `json:"xoffset"`
	Commit   bool           `json:"commit"`
	Position *string        `json:"position"`
	GTID     *string        `json:"gtid"`
	ServerID *int64         `json:"server_id"`
	Data     map[string]any `json:"data"`
	Old      map[string]any `json:"old"`
}

// maxwellOps are the row types and the Debezium operation each is.
var maxwellOps = map[string]string{"insert": "c", "bootstrap-insert": "r", "update": "u", "delete": "d"}

// DecodeMaxwell reads a record value Maxwell's daemon wrote as a Change:
// source.connector "maxwell", db the database, after the inserted row.
// An insert must say where it is in the binlog (output_binlog_position)
// and its place in the transaction (output_xoffset, the default), or a
// redelivery of it could not be told from a new row.
func DecodeMaxwell(value []byte) (Change, error) {
	if isNull(value) {
		return Change{}, ErrTombstone
	}
	var w wireMaxwell
	if err := decodeJSON(value, &w); err != nil {
		return Change{}, fmt.Errorf("decoding maxwell record: %w", err)
	}
	c, err := w.change()
	if err != nil {
		var nr *NotRowError
		if errors.As(err, &nr) {
			return Change{}, err
		}
		return Change{}, fmt.Errorf("decoding maxwell record: %w", err)
	}
	return c, nil
}

func (w *wireMaxwell) change() (Change, error) {
	if w.Type == nil || *w.Type == "" {
		return Change{}, errors.New("type missing")
	}
	var db, table string
	if w.Database != nil {
		db = *w.Database
	}
	if w.Table != nil {
		table = *w.Table
	}
	typ := *w.Type
	op, ok := maxwellOps[typ]
	if !ok {
		if typ == "bootstrap-start" || typ == "bootstrap-complete" || strings.HasPrefix(typ, "table-") || strings.HasPrefix(typ, "database-") {
			return Change{}, &NotRowError{Type: typ, Table: db + "." + table}
		}
		return Change{}, fmt.Errorf("type %q is none of insert, update, delete, bootstrap-insert", typ)
	}
	if db == "" || table == "" {
		return Change{}, errors.New("database or table missing")
	}
	if w.TS == nil {
		return Change{}, errors.New("ts missing")
	}
	if w.Data == nil {
		return Change{}, fmt.Errorf("%s without data", typ)
	}
	c := Change{Op: op, Source: Source{Connector: connectorMaxwell, DB: db, Table: table, TsUS: *w.TS * 1_000_000, Snapshot: "false"}}
	switch op {
	case "c", "r":
		c.After = w.Data
	case "u":
		c.Before, c.After = w.Old, w.Data
	case "d":
		c.Before = w.Data
	}
	if op == "r" {
		c.Source.Snapshot = "true"
	}
	if w.ServerID != nil {
		c.Source.ServerID = *w.ServerID
	}
	if w.GTID != nil {
		c.Source.GTID = *w.GTID
	}
	if w.Position != nil {
		file, off, ok := strings.Cut(*w.Position, ":")
		if i := strings.LastIndexByte(*w.Position, ':'); i >= 0 {
			file, off = (*w.Position)[:i], (*w.Position)[i+1:]
		}
		n, err := strconv.ParseUint(off, 10, 64)
		if !ok || err != nil {
			return Change{}, fmt.Errorf("position %q is not FILE:OFFSET", *w.Position)
		}
		c.Source.File, c.Source.Pos = file, n
		switch {
		case w.XOffset != nil:
			c.Source.Row = *w.XOffset
		case w.Commit:
			// The transaction's last row: after every xoffset of its event.
			c.Source.Row = math.MaxUint64
		}
		if _, err := BinlogPosition(c.Source.File, c.Source.Pos, c.Source.Row); err != nil {
			return Change{}, fmt.Errorf("position: %w", err)
		}
	}
	if op == "c" {
		if c.Source.File == "" {
			return Change{}, errors.New("an insert without position: set output_binlog_position=true, so that a redelivered row can be told from a new one")
		}
		if w.XOffset == nil && !w.Commit {
			return Change{}, errors.New("an insert without xoffset: set output_xoffset=true (and output_commit_info), so that the rows of one binlog event can be told apart")
		}
	}
	return c, nil
}

// MaxwellPartition is the partition Maxwell's daemon writes a merchant's
// rows to when it partitions by the merchant column
// (producer_partition_by=column, producer_partition_columns=<merchant
// column>, the default kafka_partition_hash): Math.abs of the Java
// String.hashCode of the value's text, modulo the partitions
// (MaxwellKafkaPartitioner).
func MaxwellPartition(merchant int64, partitions int32) int32 {
	var buf [20]byte
	var h int32
	for _, ch := range strconv.AppendInt(buf[:0], merchant, 10) {
		// Digits and '-' are single UTF-16 code units; int32 wraps as
		// Java's int does.
		h = 31*h + int32(ch)
	}
	p := h % partitions
	if p < 0 {
		p = -p
	}
	return p
}
