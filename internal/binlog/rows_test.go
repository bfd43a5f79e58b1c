package binlog

import (
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/shopspring/decimal"
)

// TestDebeziumValue renders decoded binlog values as Debezium's MySQL
// connector does. The documentation's examples: DATETIME
// "2018-06-20 06:37:03" becomes 1529476623000, and a TIMESTAMP that reads
// 06:37:03 at UTC−7 (the decoder gives it in UTC, 13:37:03) becomes
// "2018-06-20T13:37:03Z". 2026-03-02 is day 20514 (1772409600 s / 86400);
// its 12:04:05.123456 is 43445.123456 s later.
func TestDebeziumValue(t *testing.T) {
	dec := func(s string) decimal.Decimal { return decimal.RequireFromString(s) }
	for _, tc := range []struct {
		name string
		tp   byte
		meta uint16
		v    any
		want any
	}{
		{"DATETIME(6)", mysql.MYSQL_TYPE_DATETIME2, 6, "2026-03-02 12:04:05.123456", int64(1_772_453_045_123_456)},
		{"DATETIME(4)", mysql.MYSQL_TYPE_DATETIME2, 4, "2026-03-02 12:04:05.1234", int64(1_772_453_045_123_400)},
		{"DATETIME(3)", mysql.MYSQL_TYPE_DATETIME2, 3, "2026-03-02 12:10:00.500", int64(1_772_453_400_500)},
		{"DATETIME", mysql.MYSQL_TYPE_DATETIME2, 0, "2018-06-20 06:37:03", int64(1_529_476_623_000)},
		{"pre-5.6 DATETIME", mysql.MYSQL_TYPE_DATETIME, 0, "2018-06-20 06:37:03", int64(1_529_476_623_000)},
		{"zero DATETIME", mysql.MYSQL_TYPE_DATETIME2, 0, "0000-00-00 00:00:00", "0000-00-00 00:00:00"},
		{"DATETIME with a zero month", mysql.MYSQL_TYPE_DATETIME2, 0, "2026-00-02 00:00:00", "2026-00-02 00:00:00"},
		{"TIMESTAMP", mysql.MYSQL_TYPE_TIMESTAMP2, 0, "2018-06-20 13:37:03", "2018-06-20T13:37:03Z"},
		{"TIMESTAMP(6)", mysql.MYSQL_TYPE_TIMESTAMP2, 6, "2026-03-02 03:04:05.123456", "2026-03-02T03:04:05.123456Z"},
		{"zero TIMESTAMP(6)", mysql.MYSQL_TYPE_TIMESTAMP2, 6, "0000-00-00 00:00:00.000000", "0000-00-00 00:00:00.000000"},
		{"DATE", mysql.MYSQL_TYPE_DATE, 0, "2026-03-02", int64(20514)},
		{"DECIMAL(12,2)", mysql.MYSQL_TYPE_NEWDECIMAL, 12<<8 | 2, dec("5000"), "5000.00"},
		{"fractional DECIMAL(12,2)", mysql.MYSQL_TYPE_NEWDECIMAL, 12<<8 | 2, dec("12.5"), "12.50"},
		{"negative DECIMAL(12,2)", mysql.MYSQL_TYPE_NEWDECIMAL, 12<<8 | 2, dec("-3"), "-3.00"},
		{"DECIMAL(20,0)", mysql.MYSQL_TYPE_NEWDECIMAL, 20 << 8, dec("123456789012345678"), "123456789012345678"},
		{"BIGINT", mysql.MYSQL_TYPE_LONGLONG, 0, int64(42), int64(42)},
		{"VARCHAR", mysql.MYSQL_TYPE_VARCHAR, 80, "approved", "approved"},
		{"text BLOB", mysql.MYSQL_TYPE_BLOB, 2, []byte("hello"), "hello"},
		{"binary BLOB", mysql.MYSQL_TYPE_BLOB, 2, []byte{0xff, 0x00}, "/wA="},
		{"NULL", mysql.MYSQL_TYPE_DATETIME2, 6, nil, nil},
	} {
		tm := &replication.TableMapEvent{ColumnType: []byte{tc.tp}, ColumnMeta: []uint16{tc.meta}}
		if got := debeziumValue(tc.v, tm, 0); got != tc.want {
			t.Errorf("%s: debeziumValue(%v) = %#v, want %#v", tc.name, tc.v, got, tc.want)
		}
	}
}
