package console

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"tokend/admin/internal/reportcsv"
	"tokend/appliance"
)

// Token page (lifecycle actions: replace, complete/cancel a replacement,
// lost/found, extend, delete) and the Reports page. The rules are the
// Service's (appliance/lifecycle.go, reports.go); the API has the same
// actions (admin/lifecycle.go).

// lifecycleService is what these pages need beyond the console's Service.
type lifecycleService interface {
	GetToken(ctx context.Context, serial string) (appliance.Token, error)
	ReplaceToken(ctx context.Context, oldSerial string, req appliance.ReplaceRequest) (appliance.Replacement, error)
	CompleteReplacement(ctx context.Context, oldSerial string) error
	CancelReplacement(ctx context.Context, oldSerial string) error
	MarkLost(ctx context.Context, serial string, em *appliance.EmergencyRequest) (appliance.LostResult, error)
	MarkFound(ctx context.Context, serial string) (appliance.Token, error)
	ExtendToken(ctx context.Context, serial string, expiresAt time.Time) (appliance.Token, error)
	DeleteToken(ctx context.Context, serial string) error
	Report(ctx context.Context, q appliance.ReportQuery) (appliance.ReportPage, error)
}

func (c *Console) mountLifecycle(r gin.IRoutes) {
	r.GET("/tokens/:serial", c.signedIn(readers...), c.tokenPage)
	r.POST("/tokens/:serial/replace", c.signedIn(operators...), c.replaceToken)
	r.POST("/tokens/:serial/replace/complete", c.signedIn(operators...), c.endReplacement(true))
	r.POST("/tokens/:serial/replace/cancel", c.signedIn(operators...), c.endReplacement(false))
	r.POST("/tokens/:serial/lost", c.signedIn(operators...), c.markLost)
	r.POST("/tokens/:serial/found", c.signedIn(operators...), c.markFound)
	r.POST("/tokens/:serial/extend", c.signedIn(operators...), c.extendToken)
	r.POST("/tokens/:serial/delete", c.signedIn(superOnly...), c.deleteToken)
	r.GET("/reports", c.signedIn(readers...), c.reports)
	r.GET("/reports/:file", c.signedIn(readers...), c.reportCSV)
}

type tokenData struct {
	Token     appliance.Token
	User      *appliance.User
	Emergency *appliance.EmergencyAccess
	// CanDelete: super admin, and the token is unassigned.
	CanDelete bool
}

func (c *Console) tokenData(g *gin.Context, serial string) (tokenData, bool) {
	t, err := c.svc.GetToken(g.Request.Context(), serial)
	if err != nil {
		c.fail(g, err)
		return tokenData{}, false
	}
	d := tokenData{Token: t, CanDelete: t.UserID == "" && actorOf(g).Role == appliance.RoleSuperAdmin}
	if t.UserID != "" {
		if u, err := c.svc.GetUser(g.Request.Context(), t.UserID); err == nil {
			d.User = &u.User
		}
	}
	return d, true
}

func (c *Console) tokenPage(g *gin.Context) {
	d, ok := c.tokenData(g, g.Param("serial"))
	if !ok {
		return
	}
	c.render(g, http.StatusOK, "token", "Token "+d.Token.Serial, d)
}

// backToToken answers a lifecycle action with the token page.
func (c *Console) backToToken(g *gin.Context, serial, flash string) {
	c.sessions.setFlash(sessionOf(g), flash)
	redirect(g, "/tokens/"+serial)
}

func (c *Console) replaceToken(g *gin.Context) {
	serial := g.Param("serial")
	newSerial := strings.TrimSpace(g.PostForm("new_serial"))
	r, err := c.svc.ReplaceToken(g.Request.Context(), serial, appliance.ReplaceRequest{Serial: newSerial})
	if err != nil {
		c.fail(g, err)
		return
	}
	c.sessions.setFlash(sessionOf(g), "Replacement started: token "+serial+" keeps working until "+newSerial+
		" is first used. Now distribute "+newSerial+".")
	if r.New.Kind == appliance.KindSoftware {
		redirect(g, "/users/"+r.New.UserID+"/tokens/"+newSerial+"/distribute")
		return
	}
	redirect(g, "/tokens/"+serial)
}

func (c *Console) endReplacement(complete bool) gin.HandlerFunc {
	return func(g *gin.Context) {
		serial := g.Param("serial")
		end, verb := c.svc.CancelReplacement, "cancelled: the new token was unassigned"
		if complete {
			end, verb = c.svc.CompleteReplacement, "completed: token "+serial+" was unassigned and disabled"
		}
		if err := end(g.Request.Context(), serial); err != nil {
			c.fail(g, err)
			return
		}
		c.backToToken(g, serial, "Replacement "+verb+".")
	}
}

func (c *Console) markLost(g *gin.Context) {
	serial := g.Param("serial")
	var em *appliance.EmergencyRequest
	if n := strings.TrimSpace(g.PostForm("emergency_codes")); n != "" && n != "0" {
		count, err := strconv.Atoi(n)
		hours, herr := strconv.Atoi(strings.TrimSpace(g.PostForm("emergency_hours")))
		if err != nil || herr != nil {
			c.problem(g, http.StatusBadRequest, "Please correct: the number of emergency codes and their hours are whole numbers.")
			return
		}
		em = &appliance.EmergencyRequest{Kind: appliance.EmergencyOneTime, Count: count, Lifetime: time.Duration(hours) * time.Hour}
	}
	r, err := c.svc.MarkLost(g.Request.Context(), serial, em)
	if err != nil {
		c.fail(g, err)
		return
	}
	if r.Emergency == nil {
		c.backToToken(g, serial, "Token "+serial+" marked lost: it no longer authenticates.")
		return
	}
	// Rendered directly: the emergency codes exist only in this response.
	d, ok := c.tokenData(g, serial)
	if !ok {
		return
	}
	d.Emergency = r.Emergency
	c.render(g, http.StatusOK, "token", "Token "+serial, d)
}

func (c *Console) markFound(g *gin.Context) {
	serial := g.Param("serial")
	if _, err := c.svc.MarkFound(g.Request.Context(), serial); err != nil {
		c.fail(g, err)
		return
	}
	c.backToToken(g, serial, "Token "+serial+" found: it has its previous state again.")
}

func (c *Console) extendToken(g *gin.Context) {
	serial := g.Param("serial")
	day, err := time.Parse("2006-01-02", strings.TrimSpace(g.PostForm("expires_on")))
	if err != nil {
		c.problem(g, http.StatusBadRequest, "Please correct: the new expiry is a date such as 2027-06-30.")
		return
	}
	t, err := c.svc.ExtendToken(g.Request.Context(), serial, day.UTC())
	if err != nil {
		c.fail(g, err)
		return
	}
	c.backToToken(g, serial, "Token "+serial+" now expires "+t.ExpiresAt.UTC().Format("2006-01-02")+".")
}

func (c *Console) deleteToken(g *gin.Context) {
	serial := g.Param("serial")
	if err := c.svc.DeleteToken(g.Request.Context(), serial); err != nil {
		c.fail(g, err)
		return
	}
	c.sessions.setFlash(sessionOf(g), "Token "+serial+" deleted from the inventory (the audit trail keeps its tombstone).")
	redirect(g, "/tokens")
}

type reportsData struct {
	Reports []reportLink
	Current string
	Days    int
	Page    appliance.ReportPage
	CSV     string
	Next    string
}

type reportLink struct {
	Name, Title string
	TakesDays   bool
}

var reportTitles = map[string]string{
	appliance.ReportExpiringTokens:      "Tokens expiring soon",
	appliance.ReportUnusedCodes:         "Activation codes issued and unused",
	appliance.ReportUsersWithoutToken:   "Users with no token",
	appliance.ReportUsersAtLimit:        "Users at the token limit",
	appliance.ReportInactiveUsersTokens: "Tokens of inactive users",
	appliance.ReportLostTokens:          "Lost tokens",
}

// reportQuery reads ?name, ?days and ?cursor; an unknown report is 404.
func reportQuery(g *gin.Context, name string) (appliance.ReportQuery, error) {
	q := appliance.ReportQuery{Name: name, Cursor: g.Query("cursor"), Limit: 100}
	if d := strings.TrimSpace(g.Query("days")); d != "" && appliance.ReportTakesDays(name) {
		n, err := strconv.Atoi(d)
		if err != nil {
			return q, &appliance.ValidationError{Problems: []appliance.FieldError{{Field: "days", Reason: "a whole number"}}}
		}
		q.Days = n
	}
	return q, nil
}

func (c *Console) reports(g *gin.Context) {
	d := reportsData{Current: g.Query("name")}
	for _, n := range appliance.ReportNames {
		d.Reports = append(d.Reports, reportLink{n, reportTitles[n], appliance.ReportTakesDays(n)})
	}
	if d.Current == "" {
		c.render(g, http.StatusOK, "reports", "Reports", d)
		return
	}
	q, err := reportQuery(g, d.Current)
	if err == nil {
		d.Page, err = c.svc.Report(g.Request.Context(), q)
	}
	if err != nil {
		c.fail(g, err)
		return
	}
	d.Days = d.Page.Days
	args := map[string]string{}
	if d.Days > 0 {
		args["days"] = strconv.Itoa(d.Days)
	}
	d.CSV = "/console/reports/" + d.Current + ".csv"
	if len(args) > 0 {
		d.CSV += "?" + encodeQuery(args)
	}
	if d.Page.NextCursor != "" {
		args["name"], args["cursor"] = d.Current, d.Page.NextCursor
		d.Next = "?" + encodeQuery(args)
	}
	c.render(g, http.StatusOK, "reports", reportTitles[d.Current], d)
}

// reportCSV streams a whole report as CSV, page after page.
func (c *Console) reportCSV(g *gin.Context) {
	name, ok := strings.CutSuffix(g.Param("file"), ".csv")
	if !ok {
		c.notFound(g)
		return
	}
	q, err := reportQuery(g, name)
	if err != nil {
		c.fail(g, err)
		return
	}
	q.Limit = reportcsv.PageSize
	page, err := c.svc.Report(g.Request.Context(), q)
	if err != nil {
		c.fail(g, err)
		return
	}
	g.Header("Content-Type", "text/csv; charset=utf-8")
	g.Header("Content-Disposition", `attachment; filename="`+name+`.csv"`)
	g.Status(http.StatusOK)
	err = reportcsv.Write(g.Writer, page, func(cursor string) (appliance.ReportPage, error) {
		q.Cursor = cursor
		return c.svc.Report(g.Request.Context(), q)
	})
	if err != nil {
		c.log.ErrorContext(g.Request.Context(), "console report export", "report", name, "err", err)
	}
}
