package source

import (
	"encoding/binary"
	"fmt"

	"github.com/riskwatch/riskwatch/internal/event"
)

// This file decodes pgoutput protocol version 1 messages (the payload of
// XLogData). It is written by hand rather than with pglogrepl.Parse because
// it is the hottest loop of the engine: pglogrepl allocates a struct and
// copies every column byte by byte, while an event only needs three columns.
// Column values here alias the receive buffer and are valid until the next
// message is received.

// pgEpochUS is 2000-01-01 in Unix microseconds (the protocol's time origin).
const pgEpochUS = 946_684_800_000_000

type msgDecoder struct {
	b   []byte
	err error
}

func (d *msgDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("pgoutput: message truncated reading %s", what)
	}
}

func (d *msgDecoder) u8(what string) byte {
	if len(d.b) < 1 {
		d.fail(what)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *msgDecoder) u16(what string) uint16 {
	if len(d.b) < 2 {
		d.fail(what)
		return 0
	}
	v := binary.BigEndian.Uint16(d.b)
	d.b = d.b[2:]
	return v
}

func (d *msgDecoder) u32(what string) uint32 {
	if len(d.b) < 4 {
		d.fail(what)
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *msgDecoder) u64(what string) uint64 {
	if len(d.b) < 8 {
		d.fail(what)
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// cstring reads a NUL-terminated string.
func (d *msgDecoder) cstring(what string) string {
	for i, c := range d.b {
		if c == 0 {
			s := string(d.b[:i])
			d.b = d.b[i+1:]
			return s
		}
	}
	d.fail(what)
	return ""
}

func (d *msgDecoder) bytes(n int, what string) []byte {
	if n < 0 || len(d.b) < n {
		d.fail(what)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// tuple reads TupleData into row (reusing its capacity).
func (d *msgDecoder) tuple(row []event.Value) []event.Value {
	n := int(d.u16("tuple column count"))
	row = row[:0]
	for i := 0; i < n && d.err == nil; i++ {
		f := d.u8("tuple column kind")
		switch f {
		case 'n', 'u':
			row = append(row, event.Value{Format: f})
		case 't', 'b':
			l := d.u32("tuple column length")
			row = append(row, event.Value{Format: f, Data: d.bytes(int(l), "tuple column data")})
		default:
			if d.err == nil {
				d.err = fmt.Errorf("pgoutput: unknown tuple column kind %q", f)
			}
		}
	}
	return row
}

// relation is a decoded Relation message.
type relation struct {
	id        uint32
	namespace string
	name      string
	columns   []event.Column
}

func decodeRelation(d *msgDecoder) relation {
	r := relation{id: d.u32("relation id")}
	r.namespace = d.cstring("relation namespace")
	r.name = d.cstring("relation name")
	d.u8("replica identity")
	n := int(d.u16("relation column count"))
	for i := 0; i < n && d.err == nil; i++ {
		d.u8("column flags")
		name := d.cstring("column name")
		oid := d.u32("column type")
		d.u32("column type modifier")
		r.columns = append(r.columns, event.Column{Name: name, TypeOID: oid})
	}
	return r
}
