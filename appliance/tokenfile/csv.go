package tokenfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxCSVLine bounds one CSV line. Real rows are under 100 bytes; the bound
// keeps memory flat whatever is uploaded.
const maxCSVLine = 64 << 10

// CSV columns.
const (
	colSerial = iota
	colKind
	colDigits
	colInterval
	colExpires
	numCols
)

var colNames = [numCols]string{"serial", "kind", "digits", "interval", "expires_at"}

// ParseCSV decodes a whole CSV token list. See the package doc for the
// format. The error is non-nil only when the file as a whole is unusable.
func ParseCSV(r io.Reader) (*Result, error) {
	var c collector
	if err := DecodeCSV(r, c.sink()); err != nil {
		return nil, err
	}
	return c.result(), nil
}

// DecodeCSV streams a CSV token list to s, one call per data row, in file
// order, holding one line in memory at a time. A header error is returned
// before any row reaches s. A read error midway is returned after the rows
// before it were passed; the caller decides whether to keep them.
func DecodeCSV(r io.Reader, s Sink) error {
	br := bufio.NewReaderSize(r, maxCSVLine)
	var (
		line    int
		cols    [numCols]int // index of each column in a row, -1 if absent
		ncols   int          // fields per row
		fields  [][]byte
		seen    = make(map[uint64]int, 1024) // serial -> first row
		scratch []byte                       // unescaped quoted fields
		started bool
	)
	for {
		raw, tooLong, err := readLine(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("tokenfile: reading CSV: %w", err)
		}
		line++
		if !started {
			raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf"))
		}
		if tooLong {
			if !started {
				return fmt.Errorf("%w: line %d is longer than %d bytes", ErrHeader, line, maxCSVLine)
			}
			if err := s.reject(line, fmt.Sprintf("line longer than %d bytes", maxCSVLine)); err != nil {
				return err
			}
			continue
		}
		var perr string
		fields, scratch, perr = splitCSV(raw, fields[:0], scratch[:0])
		if perr == "" && blank(fields) {
			continue
		}
		if !started {
			if perr != "" {
				return fmt.Errorf("%w: line %d: %s", ErrHeader, line, perr)
			}
			if cols, err = parseHeader(fields); err != nil {
				return err
			}
			ncols = len(fields)
			started = true
			continue
		}
		if perr != "" {
			if err := s.reject(line, perr); err != nil {
				return err
			}
			continue
		}
		if len(fields) != ncols {
			if err := s.reject(line, fmt.Sprintf("has %d fields, the header has %d", len(fields), ncols)); err != nil {
				return err
			}
			continue
		}
		rec, reason := csvRecord(line, fields, &cols, seen)
		if reason != "" {
			err = s.reject(line, reason)
		} else {
			err = s.record(rec)
		}
		if err != nil {
			return err
		}
	}
	if !started {
		return fmt.Errorf("%w: no header row", ErrHeader)
	}
	return nil
}

// readLine returns the next line without its line ending. A line longer
// than the buffer is consumed and reported as tooLong.
func readLine(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	line, err = br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = br.ReadSlice('\n')
		}
		if err != nil && err != io.EOF {
			return nil, false, err
		}
		return nil, true, nil
	}
	if err == io.EOF {
		if len(line) == 0 {
			return nil, false, io.EOF
		}
		err = nil // last line without a newline
	}
	if err != nil {
		return nil, false, err
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return line, false, nil
}

// splitCSV splits one line into fields (RFC 4180 quoting, no embedded line
// breaks), trimming spaces and tabs around each field. Fields alias line or
// scratch. A non-empty reason means the line is malformed.
func splitCSV(line []byte, dst [][]byte, scratch []byte) ([][]byte, []byte, string) {
	i := 0
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i < len(line) && line[i] == '"' {
			// Quoted field. Find the closing quote, unescaping "" if any.
			i++
			start := len(scratch)
			begin := i
			plain := true
			for {
				j := bytes.IndexByte(line[i:], '"')
				if j < 0 {
					return dst, scratch, "unterminated quoted field"
				}
				if i+j+1 < len(line) && line[i+j+1] == '"' {
					if plain {
						scratch = append(scratch, line[begin:i+j+1]...)
						plain = false
					} else {
						scratch = append(scratch, line[i:i+j+1]...)
					}
					i += j + 2
					continue
				}
				if plain {
					dst = append(dst, line[begin:i+j])
				} else {
					scratch = append(scratch, line[i:i+j]...)
					dst = append(dst, scratch[start:len(scratch):len(scratch)])
				}
				i += j + 1
				break
			}
			for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
				i++
			}
			if i == len(line) {
				return dst, scratch, ""
			}
			if line[i] != ',' {
				return dst, scratch, "text after a closing quote"
			}
			i++
			continue
		}
		j := bytes.IndexByte(line[i:], ',')
		end := len(line)
		if j >= 0 {
			end = i + j
		}
		f := line[i:end]
		for len(f) > 0 && (f[len(f)-1] == ' ' || f[len(f)-1] == '\t') {
			f = f[:len(f)-1]
		}
		if bytes.IndexByte(f, '"') >= 0 {
			return dst, scratch, "quote inside an unquoted field"
		}
		dst = append(dst, f)
		if j < 0 {
			return dst, scratch, ""
		}
		i = end + 1
	}
}

func blank(fields [][]byte) bool {
	for _, f := range fields {
		if len(f) != 0 {
			return false
		}
	}
	return true
}

func parseHeader(fields [][]byte) ([numCols]int, error) {
	var cols [numCols]int
	for i := range cols {
		cols[i] = -1
	}
	for i, f := range fields {
		name := strings.ToLower(string(f))
		c := -1
		for k, n := range colNames {
			if n == name {
				c = k
			}
		}
		switch {
		case name == "":
			return cols, fmt.Errorf("%w: column %d has no name", ErrHeader, i+1)
		case c < 0:
			hint := ""
			if ValidSerial(name) {
				hint = " (the first line must be a header such as \"serial\")"
			}
			return cols, fmt.Errorf("%w: unknown column %s%s", ErrHeader, quote(string(f)), hint)
		case cols[c] >= 0:
			return cols, fmt.Errorf("%w: column %q appears twice", ErrHeader, name)
		}
		cols[c] = i
	}
	if cols[colSerial] < 0 {
		return cols, fmt.Errorf("%w: no %q column", ErrHeader, "serial")
	}
	return cols, nil
}

// csvRecord checks one row and returns its Record, or a reason listing every
// problem found so the row can be fixed in one go.
func csvRecord(line int, fields [][]byte, cols *[numCols]int, seen map[uint64]int) (Record, string) {
	get := func(c int) []byte {
		if cols[c] < 0 {
			return nil
		}
		return fields[cols[c]]
	}
	rec := Record{Row: line, Kind: KindSoftware, Algorithm: AlgSecurID, Digits: 8, Interval: 60}
	var problems []string

	serial := get(colSerial)
	var key uint64
	if !ValidSerial(string(serial)) {
		if len(serial) == 0 {
			problems = append(problems, "serial is empty")
		} else {
			problems = append(problems, "serial "+quote(string(serial))+" is not 12 digits")
		}
	} else {
		for _, c := range serial {
			key = key*10 + uint64(c-'0')
		}
		if first, dup := seen[key]; dup {
			problems = append(problems, fmt.Sprintf("duplicate serial %s, first on row %d", serial, first))
		} else {
			seen[key] = line
		}
	}

	// switch string(b) compiles without a conversion; strings are made only
	// for the reason of a bad row.
	switch v := get(colKind); {
	case len(v) == 0:
	case bytes.EqualFold(v, []byte(KindSoftware)):
	case bytes.EqualFold(v, []byte(KindHardware)):
		rec.Kind = KindHardware
	default:
		problems = append(problems, "kind "+quote(string(v))+" is not software or hardware")
	}

	switch v := get(colDigits); string(v) {
	case "", "8":
	case "6":
		rec.Digits = 6
	default:
		problems = append(problems, "digits "+quote(string(v))+" is not 6 or 8")
	}

	switch v := get(colInterval); string(v) {
	case "", "60":
	case "30":
		rec.Interval = 30
	default:
		problems = append(problems, "interval "+quote(string(v))+" is not 30 or 60")
	}

	if v := get(colExpires); len(v) != 0 {
		t, ok := parseExpiryBytes(v)
		if !ok {
			problems = append(problems, "expires_at "+quote(string(v))+" is not RFC 3339 or YYYY-MM-DD")
		}
		rec.ExpiresAt = t
	}

	if len(problems) > 0 {
		return Record{}, strings.Join(problems, "; ")
	}
	rec.Serial = string(serial)
	return rec, ""
}
