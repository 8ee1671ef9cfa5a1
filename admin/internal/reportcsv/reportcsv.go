// Package reportcsv writes a report (appliance.Report) as CSV, for the
// admin API's ?format=csv and the console's download alike.
package reportcsv

import (
	"encoding/csv"
	"io"
	"time"

	"tokend/appliance"
)

// PageSize is the page an export reads at a time: the export streams page
// after page, so memory does not grow with the report.
const PageSize = 500

// Header names the CSV columns.
var Header = []string{"serial", "user_id", "user_name", "kind", "at", "detail"}

// Write writes the header, page and the pages after it to w; next reads
// the page at a cursor. A failed write ends the export quietly (the client
// went away). The error of a page that cannot be read is returned: the
// answer is sent by then, so the caller logs it and the client sees a
// truncated file.
func Write(w io.Writer, page appliance.ReportPage, next func(cursor string) (appliance.ReportPage, error)) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(Header); err != nil {
		return nil
	}
	for {
		for _, r := range page.Items {
			at := ""
			if !r.At.IsZero() {
				at = r.At.UTC().Format(time.RFC3339)
			}
			if err := cw.Write([]string{r.Serial, r.UserID, appliance.CSVCell(r.UserName), r.Kind, at, appliance.CSVCell(r.Detail)}); err != nil {
				return nil
			}
		}
		cw.Flush()
		if page.NextCursor == "" || cw.Error() != nil {
			return nil
		}
		var err error
		if page, err = next(page.NextCursor); err != nil {
			return err
		}
	}
}
