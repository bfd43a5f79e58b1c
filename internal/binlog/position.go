package binlog

import (
	"fmt"
	"strconv"
	"strings"
)

// Position is where a transaction ends in the server's binary log: the
// file and the offset just after its last event (where the next one
// starts), and, when the server keeps global transaction IDs, the GTID set
// executed up to and including it (MariaDB's domain-server-sequence list or
// MySQL's uuid:interval set: the flavour tells them apart). A stream that
// resumes at a position starts with the transaction after it.
type Position struct {
	File string
	Pos  uint32
	GTID string
}

// String is the position as the sink's checkpoint stores it:
// "FILE:OFFSET", with " gtid=SET" when there is one.
func (p Position) String() string {
	s := p.File + ":" + strconv.FormatUint(uint64(p.Pos), 10)
	if p.GTID != "" {
		s += " gtid=" + p.GTID
	}
	return s
}

// ParsePosition reads a Position's String.
func ParsePosition(s string) (Position, error) {
	var p Position
	fp, gtid, hasGTID := strings.Cut(s, " gtid=")
	file, off, ok := strings.Cut(fp, ":")
	if i := strings.LastIndexByte(fp, ':'); i >= 0 {
		file, off, ok = fp[:i], fp[i+1:], true
	}
	if !ok || file == "" {
		return p, fmt.Errorf("binlog position %q: want FILE:OFFSET[ gtid=SET]", s)
	}
	n, err := strconv.ParseUint(off, 10, 32)
	if err != nil {
		return p, fmt.Errorf("binlog position %q: offset: %w", s, err)
	}
	p.File, p.Pos = file, uint32(n)
	if hasGTID {
		p.GTID = gtid
	}
	return p, nil
}

// behind is how many bytes of the log lie after p, given the server's
// files and their sizes in order; ok is false when p's file is no longer
// among them.
func behind(p Position, files []logFile) (n int64, ok bool) {
	for _, f := range files {
		switch {
		case ok:
			n += f.Size
		case f.Name == p.File:
			ok = true
			n += max(0, f.Size-int64(p.Pos))
		}
	}
	return n, ok
}

// logFile is one binary log file the server holds.
type logFile struct {
	Name string
	Size int64
}
