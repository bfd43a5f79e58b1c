package kafka

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// A change from a MySQL or MariaDB source: Debezium's MySQL (or MariaDB)
// connector, Maxwell's daemon, or capture reading a MySQL source.

// Connector names whose rows are a MySQL source's: Debezium's two binlog
// connectors, and Maxwell's records (DecodeMaxwell names them so).
const (
	connectorMySQL   = "mysql"
	connectorMariaDB = "mariadb"
	connectorMaxwell = "maxwell"
)

func isMySQLConnector(name string) bool {
	return name == connectorMySQL || name == connectorMariaDB || name == connectorMaxwell
}

// MySQL reports whether the change comes from a MySQL or MariaDB source:
// its table's schema is then the database (source.db), and its values are
// read as that source writes them (DATETIME wall clocks in
// source.time_zone).
func (c Change) MySQL() bool { return isMySQLConnector(c.Source.Connector) }

// Table is the change's table as the mapping names it: schema.table, the
// schema being the database for MySQL.
func (c Change) Table() (schema, table string) {
	if c.MySQL() {
		return c.Source.DB, c.Source.Table
	}
	return c.Source.Schema, c.Source.Table
}

// Where is the change's source position for a dead letter.
func (c Change) Where() string {
	if c.Source.File != "" {
		return fmt.Sprintf("binlog %s:%d row %d", c.Source.File, c.Source.Pos, c.Source.Row)
	}
	return fmt.Sprintf("source position %d", c.Source.LSN)
}

// BinlogPosition is the Position of a change at a MySQL or MariaDB binlog
// position. Commit holds the file's sequence number (the digits after the
// name's last dot: "mysql-bin.000003" is 3) in its upper 32 bits and the
// offset in the file in its lower 32 (a binlog file ends before 4 GiB:
// max_binlog_size is at most 1 GiB); LSN is the row's place at that offset.
// The server numbers its files in the order it writes them, so positions
// compare as the binlog is ordered, across rotations.
func BinlogPosition(file string, offset, row uint64) (Position, error) {
	dot := strings.LastIndexByte(file, '.')
	seq, err := strconv.ParseUint(file[dot+1:], 10, 32)
	if dot < 0 || err != nil {
		return Position{}, fmt.Errorf("binlog file %q does not end in a sequence number", file)
	}
	if offset > math.MaxUint32 {
		return Position{}, fmt.Errorf("binlog offset %d is past 4 GiB", offset)
	}
	return Position{Commit: seq<<32 | offset, LSN: row}, nil
}

// binlog reads the source block's binlog fields into c.
func (s *wireSource) binlog(c *Change) error {
	if s.ServerID != nil {
		c.Source.ServerID = *s.ServerID
	}
	if s.GTID != nil {
		c.Source.GTID = *s.GTID
	}
	if s.File != nil && *s.File != "" {
		c.Source.File = *s.File
		if s.Pos != nil {
			c.Source.Pos = *s.Pos
		}
		if s.Row != nil {
			c.Source.Row = *s.Row
		}
		if _, err := BinlogPosition(c.Source.File, c.Source.Pos, c.Source.Row); err != nil {
			return fmt.Errorf("source.file: %w", err)
		}
	}
	// The documentation's create example has a source.ts_ms of 0: the
	// change's commit time is unknown then, and the connector processed it
	// no earlier than it was committed.
	if c.MySQL() && c.Source.TsUS == 0 {
		c.Source.TsUS = c.TsMS * 1000
	}
	return nil
}

// FieldType is a column's semantic type in a change event's schema.
type FieldType struct {
	// Name is the schema name, e.g. io.debezium.time.MicroTimestamp or
	// org.apache.kafka.connect.data.Decimal.
	Name string
	// Scale is a Decimal's scale parameter.
	Scale int
}

// Semantic types riskwatch reads (Debezium's MySQL connector
// documentation, "Temporal types" and "Decimal types").
const (
	typeTimestamp        = "io.debezium.time.Timestamp"
	typeMicroTimestamp   = "io.debezium.time.MicroTimestamp"
	typeNanoTimestamp    = "io.debezium.time.NanoTimestamp"
	typeConnectTimestamp = "org.apache.kafka.connect.data.Timestamp"
	typeZonedTimestamp   = "io.debezium.time.ZonedTimestamp"
	typeDecimal          = "org.apache.kafka.connect.data.Decimal"
)

// wireSchema is a Kafka Connect schema as JsonConverter writes it.
type wireSchema struct {
	Field      string            `json:"field"`
	Name       string            `json:"name"`
	Parameters map[string]string `json:"parameters"`
	Fields     []wireSchema      `json:"fields"`
}

// afterTypes reads the semantic types of the envelope schema's `after`
// fields.
func afterTypes(raw json.RawMessage) (map[string]FieldType, error) {
	var s wireSchema
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, err
	}
	var out map[string]FieldType
	for _, f := range s.Fields {
		if f.Field != "after" {
			continue
		}
		for _, col := range f.Fields {
			if col.Name == "" {
				continue
			}
			ft := FieldType{Name: col.Name}
			if sc, ok := col.Parameters["scale"]; ok {
				n, err := strconv.Atoi(sc)
				if err != nil || n < 0 {
					return nil, fmt.Errorf("column %q: decimal scale %q", col.Field, sc)
				}
				ft.Scale = n
			}
			if out == nil {
				out = map[string]FieldType{}
			}
			out[col.Field] = ft
		}
	}
	return out, nil
}

// wireMySQLChange is a change event as Debezium's MySQL connector writes
// it with JsonConverter and schemas.enable=false, in its field order.
type wireMySQLChange struct {
	Before map[string]any  `json:"before"`
	After  map[string]any  `json:"after"`
	Source wireMySQLSource `json:"source"`
	Op     string          `json:"op"`
	TsMS   int64           `json:"ts_ms"`
}

type wireMySQLSource struct {
	Version   string  `json:"version"`
	Connector string  `json:"connector"`
	Name      string  `json:"name"`
	TsMS      int64   `json:"ts_ms"`
	TsUS      int64   `json:"ts_us"`
	Snapshot  string  `json:"snapshot"`
	DB        string  `json:"db"`
	Sequence  *string `json:"sequence"`
	Table     string  `json:"table"`
	ServerID  int64   `json:"server_id"`
	GTID      *string `json:"gtid"`
	File      string  `json:"file"`
	Pos       uint64  `json:"pos"`
	Row       uint64  `json:"row"`
	Thread    *int64  `json:"thread"`
	Query     *string `json:"query"`
}

// encodeMySQL writes c as Debezium's MySQL connector does.
func encodeMySQL(c Change) ([]byte, error) {
	s := c.Source
	if s.File == "" {
		return nil, errors.New("encoding change event: a MySQL change needs its binlog file")
	}
	if s.Snapshot == "" {
		s.Snapshot = "false"
	}
	w := wireMySQLChange{Before: c.Before, After: c.After, Op: c.Op, TsMS: c.TsMS, Source: wireMySQLSource{
		Version: s.Version, Connector: s.Connector, Name: s.Name, TsMS: floorDiv(s.TsUS, 1000), TsUS: s.TsUS, Snapshot: s.Snapshot,
		DB: s.DB, Table: s.Table, ServerID: s.ServerID, File: s.File, Pos: s.Pos, Row: s.Row,
	}}
	if s.GTID != "" {
		w.Source.GTID = &s.GTID
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encoding change event for %s.%s: %w", s.DB, s.Table, err)
	}
	return b, nil
}
