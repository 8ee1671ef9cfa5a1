package admin

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"tokend/admin/internal/reportcsv"
	"tokend/appliance"
)

// ReportRowDTO is one line of a report; which fields are set depends on
// the report (see the README's "Token lifecycle").
type ReportRowDTO struct {
	Serial   string     `json:"serial,omitempty"`
	UserID   string     `json:"user_id,omitempty"`
	UserName string     `json:"user_name,omitempty"`
	Kind     string     `json:"kind,omitempty"`
	At       *time.Time `json:"at"`
	Detail   string     `json:"detail"`
}

// ReportDTO is one page of a report.
type ReportDTO struct {
	Report     string         `json:"report"`
	Days       int            `json:"days,omitempty"`
	Items      []ReportRowDTO `json:"items"`
	NextCursor string         `json:"next_cursor"`
}

func reportRowDTO(r appliance.ReportRow) ReportRowDTO {
	return ReportRowDTO{Serial: r.Serial, UserID: r.UserID, UserName: r.UserName, Kind: r.Kind, At: optTime(r.At), Detail: r.Detail}
}

func (s *Server) report(c *gin.Context) {
	days, err := queryInt(c, "days")
	if err != nil {
		s.WriteError(c, err)
		return
	}
	limit, err := queryInt(c, "limit")
	if err != nil {
		s.WriteError(c, err)
		return
	}
	format := c.Query("format")
	if format != "" && format != "json" && format != "csv" {
		s.WriteError(c, invalid("format", "must be json or csv"))
		return
	}
	q := appliance.ReportQuery{Name: c.Param("name"), Days: days, Limit: limit, Cursor: c.Query("cursor")}
	if format == "csv" {
		q.Limit = reportcsv.PageSize
	}
	page, err := s.svc.Report(ctx(c), q)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	if format != "csv" {
		render(c, http.StatusOK, ReportDTO{Report: page.Name, Days: page.Days, NextCursor: page.NextCursor,
			Items: mapDTO(page.Items, reportRowDTO)})
		return
	}
	c.Header("Content-Type", "text/csv; charset=utf-8")
	c.Header("Content-Disposition", `attachment; filename="`+page.Name+`.csv"`)
	c.Status(http.StatusOK)
	err = reportcsv.Write(c.Writer, page, func(cursor string) (appliance.ReportPage, error) {
		q.Cursor = cursor
		return s.svc.Report(ctx(c), q)
	})
	if err != nil {
		// The status is sent: the export ends short, and the log says why
		// (the client sees a truncated file).
		s.log.ErrorContext(c.Request.Context(), "report export failed", "report", q.Name, "err", err)
	}
}
