package reportcsv

import (
	"errors"
	"strings"
	"testing"

	"tokend/appliance"
)

func TestWrite(t *testing.T) {
	pages := map[string]appliance.ReportPage{
		"2": {Items: []appliance.ReportRow{{Serial: "2", UserName: "=cmd()"}}, NextCursor: "3"},
	}
	first := appliance.ReportPage{Items: []appliance.ReportRow{{Serial: "1", UserName: "ann", Detail: "@x"}}, NextCursor: "2"}
	var b strings.Builder
	failed := errors.New("store down")
	err := Write(&b, first, func(cursor string) (appliance.ReportPage, error) {
		if p, ok := pages[cursor]; ok {
			return p, nil
		}
		return appliance.ReportPage{}, failed
	})
	if !errors.Is(err, failed) {
		t.Fatalf("error %v, want the page read's", err)
	}
	want := "serial,user_id,user_name,kind,at,detail\n1,,ann,,,'@x\n2,,'=cmd(),,,\n"
	if b.String() != want {
		t.Fatalf("wrote %q, want %q", b.String(), want)
	}
}

func TestCell(t *testing.T) {
	for in, want := range map[string]string{"": "", "ann": "ann", "=1+1": "'=1+1", "+1": "'+1", "-1": "'-1",
		"@SUM(A1)": "'@SUM(A1)", "\tx": "'\tx", "\rx": "'\rx", "a=b": "a=b"} {
		if got := appliance.CSVCell(in); got != want {
			t.Errorf("CSVCell(%q) = %q, want %q", in, got, want)
		}
	}
}
