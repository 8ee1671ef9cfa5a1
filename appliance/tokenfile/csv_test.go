package tokenfile

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func sw(row int, serial string) Record {
	return Record{Row: row, Serial: serial, Kind: KindSoftware, Algorithm: AlgSecurID, Digits: 8, Interval: 60}
}

func TestCSV(t *testing.T) {
	with := func(r Record, f func(*Record)) Record { f(&r); return r }
	tests := []struct {
		name string
		in   string
		want Result
	}{
		{
			name: "serials only, defaults",
			in:   "serial\n000000000001\n000000000002\n",
			want: Result{Records: []Record{sw(2, "000000000001"), sw(3, "000000000002")}},
		},
		{
			name: "all columns",
			in:   "serial,kind,digits,interval,expires_at\n000000000001,hardware,6,30,2030-12-31\n000000000002,software,8,60,2030-12-31T23:59:59+01:00\n",
			want: Result{Records: []Record{
				with(sw(2, "000000000001"), func(r *Record) {
					r.Kind, r.Digits, r.Interval, r.ExpiresAt = KindHardware, 6, 30, date(2030, 12, 31)
				}),
				with(sw(3, "000000000002"), func(r *Record) { r.ExpiresAt = time.Date(2030, 12, 31, 22, 59, 59, 0, time.UTC) }),
			}},
		},
		{
			name: "columns in any order, any case, quoted, padded",
			in:   "  Expires_At ,\"DIGITS\",Serial,KIND,interval\n2030-01-02, 6 ,\"000000000001\", Hardware ,\"30\"\n",
			want: Result{Records: []Record{with(sw(2, "000000000001"), func(r *Record) {
				r.Kind, r.Digits, r.Interval, r.ExpiresAt = KindHardware, 6, 30, date(2030, 1, 2)
			})}},
		},
		{
			name: "BOM, CRLF, no final newline",
			in:   "\ufeffserial,kind\r\n000000000001,software\r\n000000000002,hardware",
			want: Result{Records: []Record{sw(2, "000000000001"), with(sw(3, "000000000002"), func(r *Record) { r.Kind = KindHardware })}},
		},
		{
			name: "blank lines and empty rows skipped but counted",
			in:   "\n\nserial,kind\n\n000000000001,\n   \n,\n\t\n\"\",\"\"\n000000000002,\n",
			want: Result{Records: []Record{sw(5, "000000000001"), sw(10, "000000000002")}},
		},
		{
			name: "empty optional fields take defaults",
			in:   "serial,kind,digits,interval,expires_at\n000000000001,,,,\n",
			want: Result{Records: []Record{sw(2, "000000000001")}},
		},
		{
			name: "escaped quote in a quoted field",
			in:   "serial,kind\n000000000001,\"soft\"\"ware\"\n",
			want: Result{Rejections: []Rejection{{2, `kind "soft\"ware" is not software or hardware`}}},
		},
		{
			name: "header only",
			in:   "serial,kind\n",
			want: Result{},
		},
		{
			name: "every row error, good rows still parse",
			in: "serial,kind,digits,interval,expires_at\n" +
				"000000000001,software,8,60,\n" + // 2 ok
				"12345,,,,\n" + // 3
				"1234567890123,,,,\n" + // 4
				"00000000000A,,,,\n" + // 5
				",hardware,,,\n" + // 6
				"000000000002,virtual,,,\n" + // 7
				"000000000003,,7,,\n" + // 8
				"000000000004,,,45,\n" + // 9
				"000000000005,,,,31/12/2030\n" + // 10
				"000000000006,,,\n" + // 11
				"000000000007,,,,,\n" + // 12
				"000000000008,\"software,,,\n" + // 13
				"000000000009,soft\"ware,,,\n" + // 14
				"000000000010,\"software\"x,,,\n" + // 15
				"000000000001,,,,\n" + // 16
				"000000000003,,,,\n" + // 17: first occurrence was rejected
				"１２３４５６７８９０１２,,,,\n" + // 18 full-width digits
				"000000000011,HARDWARE,6,30,2030-02-30\n" + // 19
				"000000000012,,,,\n", // 20 ok
			want: Result{
				Records: []Record{sw(2, "000000000001"), sw(20, "000000000012")},
				Rejections: []Rejection{
					{3, `serial "12345" is not 12 digits`},
					{4, `serial "1234567890123" is not 12 digits`},
					{5, `serial "00000000000A" is not 12 digits`},
					{6, "serial is empty"},
					{7, `kind "virtual" is not software or hardware`},
					{8, `digits "7" is not 6 or 8`},
					{9, `interval "45" is not 30 or 60`},
					{10, `expires_at "31/12/2030" is not RFC 3339 or YYYY-MM-DD`},
					{11, "has 4 fields, the header has 5"},
					{12, "has 6 fields, the header has 5"},
					{13, "unterminated quoted field"},
					{14, "quote inside an unquoted field"},
					{15, "text after a closing quote"},
					{16, "duplicate serial 000000000001, first on row 2"},
					{17, "duplicate serial 000000000003, first on row 8"},
					{18, `serial "１２３４５６７８９０１２" is not 12 digits`},
					{19, `expires_at "2030-02-30" is not RFC 3339 or YYYY-MM-DD`},
				},
			},
		},
		{
			name: "several problems in one row",
			in:   "serial,kind,digits,interval\nabc,x,9,0\n",
			want: Result{Rejections: []Rejection{{2, `serial "abc" is not 12 digits; kind "x" is not software or hardware; digits "9" is not 6 or 8; interval "0" is not 30 or 60`}}},
		},
		{
			name: "over-long line rejected, next row parses",
			in:   "serial\n" + strings.Repeat("9", maxCSVLine+10) + "\n000000000001\n",
			want: Result{
				Records:    []Record{sw(3, "000000000001")},
				Rejections: []Rejection{{2, fmt.Sprintf("line longer than %d bytes", maxCSVLine)}},
			},
		},
		{
			name: "long garbage is shortened in the reason",
			in:   "serial\n" + strings.Repeat("x", 100) + "\n",
			want: Result{Rejections: []Rejection{{2, `serial "` + strings.Repeat("x", 40) + `"… is not 12 digits`}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCSV(strings.NewReader(tt.in))
			if err != nil {
				t.Fatalf("ParseCSV: %v", err)
			}
			if diff := cmp.Diff(&tt.want, got); diff != "" {
				t.Errorf("ParseCSV (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCSVHeaderErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantMsg string // must appear in the error
	}{
		{"empty file", "", "no header row"},
		{"blank lines only", "\n\r\n  \n", "no header row"},
		{"unknown column", "serial,kind,seed\n000000000001,software,abc\n", `unknown column "seed"`},
		{"unknown column keeps its case", "Serial,Colour\n", `unknown column "Colour"`},
		{"no header, serial first", "000000000001\n000000000002\n", `unknown column "000000000001" (the first line must be a header`},
		{"semicolons", "serial;kind\n", `unknown column "serial;kind"`},
		{"duplicate column", "serial,Serial\n", `column "serial" appears twice`},
		{"no serial column", "kind,digits\nsoftware,8\n", `no "serial" column`},
		{"empty column name", "serial,,kind\n", "column 2 has no name"},
		{"malformed header", "serial,\"kind\n", "line 1: unterminated quoted field"},
		{"header too long", strings.Repeat("a", maxCSVLine+1), "line 1 is longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rows int
			err := DecodeCSV(strings.NewReader(tt.in), Sink{
				Record: func(Record) error { rows++; return nil },
				Reject: func(Rejection) error { rows++; return nil },
			})
			if !errors.Is(err, ErrHeader) {
				t.Fatalf("DecodeCSV error = %v, want ErrHeader", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
			if rows != 0 {
				t.Errorf("%d rows reached the sink", rows)
			}
		})
	}
}

func TestCSVTestdata(t *testing.T) {
	tests := []struct {
		file       string
		records    int
		rejections int
	}{
		{"tokens.csv", 3, 0},
		{"tokens-crlf-bom.csv", 1, 3},
		{"serials.csv", 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := ParseCSV(bytes.NewReader(readTestdata(t, tt.file)))
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Records) != tt.records || len(got.Rejections) != tt.rejections {
				t.Errorf("got %d records, %d rejections %v; want %d, %d", len(got.Records), len(got.Rejections), got.Rejections, tt.records, tt.rejections)
			}
		})
	}
}

func TestCSVSinkError(t *testing.T) {
	stop := errors.New("stop")
	var calls int
	err := DecodeCSV(strings.NewReader("serial\n000000000001\nbad\n000000000002\n"), Sink{
		Reject: func(Rejection) error { calls++; return stop },
		Record: func(Record) error { calls++; return nil },
	})
	if !errors.Is(err, stop) || calls != 2 {
		t.Fatalf("DecodeCSV = %v after %d calls, want stop after 2", err, calls)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestCSVReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	if _, err := ParseCSV(errReader{boom}); !errors.Is(err, boom) {
		t.Fatalf("ParseCSV = %v, want %v", err, boom)
	}
}

// csv100k is a 100,000-row file with every column set.
func csv100k() []byte {
	var b bytes.Buffer
	b.WriteString("serial,kind,digits,interval,expires_at\n")
	for i := range 100_000 {
		fmt.Fprintf(&b, "%012d,software,8,60,2030-12-31\n", 100_000_000_000+i)
	}
	return b.Bytes()
}

func TestCSV100k(t *testing.T) {
	data := csv100k()
	start := time.Now()
	got, err := ParseCSV(bytes.NewReader(data))
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Records) != 100_000 || len(got.Rejections) != 0 {
		t.Fatalf("got %d records, %d rejections", len(got.Records), len(got.Rejections))
	}
	if last := got.Records[len(got.Records)-1]; last.Row != 100_001 || last.Serial != "100000099999" {
		t.Errorf("last record = row %d serial %s", last.Row, last.Serial)
	}
	t.Logf("100,000 rows in %v", took)
}

func BenchmarkParseCSV100k(b *testing.B) {
	data := csv100k()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := ParseCSV(bytes.NewReader(data))
		if err != nil || len(res.Records) != 100_000 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*100_000/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkDecodeCSV100k(b *testing.B) {
	data := csv100k()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	n := 0
	sink := Sink{Record: func(Record) error { n++; return nil }}
	for b.Loop() {
		if err := DecodeCSV(bytes.NewReader(data), sink); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
}
