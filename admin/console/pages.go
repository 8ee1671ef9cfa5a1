package console

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	qrcode "github.com/skip2/go-qrcode"

	"tokend/appliance"
)

// Quick search and the user dashboard.

type usersData struct {
	Query string
	Page  appliance.UserPage
}

func (c *Console) users(g *gin.Context) {
	q := strings.TrimSpace(g.Query("q"))
	page, err := c.svc.ListUsers(g.Request.Context(), appliance.UserQuery{Search: q, Limit: 50, Cursor: g.Query("cursor")})
	if err != nil {
		c.fail(g, err)
		return
	}
	c.render(g, http.StatusOK, "users", "Users", usersData{Query: q, Page: page})
}

type userData struct {
	User       appliance.UserView
	SourceName string
	Held       int
	Max        int
}

func countHeld(toks []appliance.Token) int { return appliance.HeldTowardLimit(toks) }

func (c *Console) sourceName(g *gin.Context, id string) string {
	if id == appliance.SourceInternal || c.src == nil {
		return id
	}
	list, err := c.src.ListIdentitySources(g.Request.Context())
	if err != nil {
		return id
	}
	for _, s := range list {
		if s.ID == id {
			return s.Name + " (" + s.Type + ")"
		}
	}
	return id
}

func (c *Console) user(g *gin.Context) {
	u, err := c.svc.GetUser(g.Request.Context(), g.Param("id"))
	if err != nil {
		c.fail(g, err)
		return
	}
	c.render(g, http.StatusOK, "user", u.UserName, userData{User: u, SourceName: c.sourceName(g, u.Source),
		Held: countHeld(u.Tokens), Max: appliance.MaxTokensPerUser})
}

func (c *Console) setEnabled(enabled bool) gin.HandlerFunc {
	return func(g *gin.Context) {
		id, serial := g.Param("id"), g.Param("serial")
		if !c.ownedBy(g, id, serial) {
			return
		}
		if _, err := c.svc.SetTokenEnabled(g.Request.Context(), serial, enabled); err != nil {
			c.fail(g, err)
			return
		}
		verb := "disabled"
		if enabled {
			verb = "enabled"
		}
		c.sessions.setFlash(sessionOf(g), "Token "+serial+" "+verb+".")
		redirect(g, "/users/"+id)
	}
}

// ownedBy checks that serial belongs to user id, so an action posted from
// one user's dashboard cannot touch another user's token.
func (c *Console) ownedBy(g *gin.Context, id, serial string) bool {
	u, err := c.svc.GetUser(g.Request.Context(), id)
	if err != nil {
		c.fail(g, err)
		return false
	}
	for _, t := range u.Tokens {
		if t.Serial == serial {
			return true
		}
	}
	c.problem(g, http.StatusNotFound, "Token "+serial+" is not assigned to "+u.UserName+".")
	return false
}

func (c *Console) unassign(g *gin.Context) {
	id, serial := g.Param("id"), g.Param("serial")
	if err := c.svc.UnassignToken(g.Request.Context(), id, serial); err != nil {
		c.fail(g, err)
		return
	}
	c.sessions.setFlash(sessionOf(g), "Token "+serial+" unassigned.")
	redirect(g, "/users/"+id)
}

// Assign Software Tokens.

type assignData struct {
	User    appliance.UserView
	Held    int
	Max     int
	Room    int
	Query   string
	Page    appliance.TokenPage
	Checked map[string]bool
}

func (c *Console) assignForm(g *gin.Context) { c.assignPage(g, http.StatusOK, nil) }

func (c *Console) assignPage(g *gin.Context, status int, checked []string) {
	u, err := c.svc.GetUser(g.Request.Context(), g.Param("id"))
	if err != nil {
		c.fail(g, err)
		return
	}
	q := strings.TrimSpace(g.Query("q"))
	unassigned := false
	page, err := c.svc.ListTokens(g.Request.Context(), appliance.TokenQuery{Search: q, Assigned: &unassigned,
		Kind: appliance.KindSoftware, Limit: 50, Cursor: g.Query("cursor")})
	var v *appliance.ValidationError
	if errors.As(err, &v) {
		g.Set("console.error", "Search by serial prefix: digits only.")
		status, page = http.StatusBadRequest, appliance.TokenPage{}
	} else if err != nil {
		c.fail(g, err)
		return
	}
	d := assignData{User: u, Held: countHeld(u.Tokens), Max: appliance.MaxTokensPerUser, Query: q, Page: page,
		Checked: map[string]bool{}}
	d.Room = max(d.Max-d.Held, 0)
	for _, s := range checked {
		d.Checked[s] = true
	}
	c.render(g, status, "assign", "Assign software tokens", d)
}

func (c *Console) assign(g *gin.Context) {
	id := g.Param("id")
	serials := g.PostFormArray("serial")
	if len(serials) == 0 {
		g.Set("console.error", "Select at least one token to assign.")
		c.assignPage(g, http.StatusBadRequest, nil)
		return
	}
	_, err := c.svc.AssignTokens(g.Request.Context(), id, serials)
	if err != nil {
		c.formError(g, err, func(status int) {
			if errors.Is(err, appliance.ErrLimit) {
				g.Set("console.error", fmt.Sprintf("Not assigned: the user would then hold more than %d hardware or software tokens, "+
					"the most one user may hold. Unassign a token first, or select fewer.", appliance.MaxTokensPerUser))
			}
			c.assignPage(g, status, serials)
		})
		return
	}
	if len(serials) == 1 {
		c.sessions.setFlash(sessionOf(g), "Token "+serials[0]+" assigned. Now select a token profile to distribute it.")
		redirect(g, "/users/"+id+"/tokens/"+serials[0]+"/distribute")
		return
	}
	c.sessions.setFlash(sessionOf(g), fmt.Sprintf("%d tokens assigned.", len(serials)))
	redirect(g, "/users/"+id)
}

// Select Token Profile and the distribution result.

type distributeData struct {
	User     appliance.User
	Token    appliance.Token
	Profiles []appliance.Profile
	Reissue  bool
}

func (c *Console) distributeForm(g *gin.Context) { c.distributePage(g, http.StatusOK) }

func (c *Console) distributePage(g *gin.Context, status int) {
	u, err := c.svc.GetUser(g.Request.Context(), g.Param("id"))
	if err != nil {
		c.fail(g, err)
		return
	}
	var tok *appliance.Token
	for i := range u.Tokens {
		if u.Tokens[i].Serial == g.Param("serial") {
			tok = &u.Tokens[i]
		}
	}
	if tok == nil {
		c.problem(g, http.StatusNotFound, "Token "+g.Param("serial")+" is not assigned to "+u.UserName+".")
		return
	}
	all, err := c.svc.ListProfiles(g.Request.Context())
	if err != nil {
		c.fail(g, err)
		return
	}
	c.render(g, status, "distribute", "Select token profile", distributeData{User: u.User, Token: *tok, Profiles: all,
		Reissue: tok.Provisioned || len(tok.CodeHash) > 0})
}

// Schemes of the links tokend builds, which pages make clickable: CT-KIP
// device links, and CTF and otpauth links.
var (
	ctkipLinkSchemes = []string{"https://", "com.rsa.securid://", "securidauthenticator://"}
	seedLinkSchemes  = []string{"http://127.0.0.1/securid/ctf?", "com.rsa.securid.iphone://ctf?", "otpauth://totp/"}
)

// linkQR returns link's QR code as a data: URL, and link as a clickable URL
// when it starts with one of schemes (only links tokend built are marked
// safe; any other stays text).
func linkQR(link string, schemes []string) (qr, href template.URL, err error) {
	png, err := qrcode.Encode(link, qrcode.Medium, 256)
	if err != nil {
		return "", "", err
	}
	for _, scheme := range schemes {
		if strings.HasPrefix(link, scheme) {
			href = template.URL(link)
		}
	}
	return dataURL("image/png", png), href, nil
}

// dataURL is b as a data: URL of the media type, for a download or an
// image that exists only in the page.
func dataURL(mediaType string, b []byte) template.URL {
	return template.URL("data:" + mediaType + ";base64," + base64.StdEncoding.EncodeToString(b))
}

type distributionData struct {
	User      appliance.User
	D         appliance.Distribution
	Code      string
	DeviceURL string
	// DeviceHref is the device link as a clickable URL; only links we built
	// (https or the SecurID app schemes) are marked safe.
	DeviceHref template.URL
	QR         template.URL
}

func (c *Console) distribute(g *gin.Context) {
	id, serial := g.Param("id"), g.Param("serial")
	u, err := c.svc.GetUser(g.Request.Context(), id)
	if err != nil {
		c.fail(g, err)
		return
	}
	if !c.ownedBy(g, id, serial) {
		return
	}
	profile := g.PostForm("profile")
	if profile == "" {
		g.Set("console.error", "Select a token profile.")
		c.distributePage(g, http.StatusBadRequest)
		return
	}
	if c.deliverSeed(g, u.User, serial, profile) {
		return
	}
	d, err := c.svc.Distribute(g.Request.Context(), serial, profile)
	if err != nil {
		c.fail(g, err)
		return
	}
	dev := d.DeviceURL.Reveal()
	out := distributionData{User: u.User, D: d, Code: d.ActivationCode.Reveal(), DeviceURL: dev}
	if out.QR, out.DeviceHref, err = linkQR(dev, ctkipLinkSchemes); err != nil {
		c.fail(g, err)
		return
	}
	// Rendered directly (not after a redirect): the code exists only in
	// this response, which no-store keeps out of every cache.
	c.render(g, http.StatusOK, "distribution", "Token distribution", out)
}

// Tokens and import.

type tokensData struct {
	Query, Kind, Assigned string
	Page                  appliance.TokenPage
	Next                  string
}

func (c *Console) tokens(g *gin.Context) {
	d := tokensData{Query: strings.TrimSpace(g.Query("q")), Kind: g.Query("kind"), Assigned: g.Query("assigned")}
	q := appliance.TokenQuery{Search: d.Query, Kind: d.Kind, Limit: 50, Cursor: g.Query("cursor")}
	switch d.Assigned {
	case "yes", "no":
		b := d.Assigned == "yes"
		q.Assigned = &b
	default:
		d.Assigned = ""
	}
	page, err := c.svc.ListTokens(g.Request.Context(), q)
	var v *appliance.ValidationError
	status := http.StatusOK
	if errors.As(err, &v) {
		_, msg := explain(err)
		g.Set("console.error", msg)
		status = http.StatusBadRequest
	} else if err != nil {
		c.fail(g, err)
		return
	}
	d.Page = page
	if page.NextCursor != "" {
		d.Next = "?" + encodeQuery(map[string]string{"q": d.Query, "kind": d.Kind, "assigned": d.Assigned, "cursor": page.NextCursor})
	}
	c.render(g, status, "tokens", "Tokens", d)
}

// pendingImport is a previewed token file waiting to be applied.
type pendingImport struct {
	body []byte
	req  appliance.ImportRequest
	name string
}

type importData struct {
	Job      appliance.ImportJob
	FileName string
	Preview  bool
}

func (c *Console) importForm(g *gin.Context) {
	c.render(g, http.StatusOK, "import", "Import tokens", nil)
}

// importPreview runs the upload as a dry run and keeps the file in the
// session, so Apply imports exactly what was previewed.
func (c *Console) importPreview(g *gin.Context) {
	fh, err := g.FormFile("file")
	if err != nil {
		g.Set("console.error", "Choose a token file to import.")
		c.render(g, http.StatusBadRequest, "import", "Import tokens", nil)
		return
	}
	f, err := fh.Open()
	if err != nil {
		c.fail(g, err)
		return
	}
	defer f.Close()
	body, err := io.ReadAll(io.LimitReader(f, c.maxImport+1))
	if err != nil {
		c.fail(g, err)
		return
	}
	if int64(len(body)) > c.maxImport {
		c.problem(g, http.StatusRequestEntityTooLarge, fmt.Sprintf("The file is larger than %d MiB.", c.maxImport>>20))
		return
	}
	req := appliance.ImportRequest{Format: g.PostForm("format"), OnDuplicate: g.PostForm("on_duplicate"),
		Kind: g.PostForm("kind"), PSKCPassword: appliance.Secret(g.PostForm("pskc_password")),
		FilePassword: appliance.Secret(g.PostForm("file_password"))}
	if k := strings.TrimSpace(g.PostForm("pskc_key")); k != "" {
		key, err := hex.DecodeString(k)
		if err != nil {
			g.Set("console.error", "The PSKC key must be hexadecimal.")
			c.render(g, http.StatusBadRequest, "import", "Import tokens", nil)
			return
		}
		req.PSKCKey = key
	}
	dry := req
	dry.DryRun, dry.Body = true, bytes.NewReader(body)
	job, err := c.svc.ImportTokens(g.Request.Context(), dry)
	if err != nil {
		c.formError(g, err, func(status int) { c.render(g, status, "import", "Import tokens", nil) })
		return
	}
	c.sessions.setPending(sessionOf(g), &pendingImport{body: body, req: req, name: fh.Filename})
	c.render(g, http.StatusOK, "import_report", "Import preview", importData{Job: job, FileName: fh.Filename, Preview: true})
}

func (c *Console) importApply(g *gin.Context) {
	p := c.sessions.takePending(sessionOf(g))
	if p == nil {
		g.Set("console.error", "There is no previewed file to apply (it is applied once). Upload it again.")
		c.render(g, http.StatusConflict, "import", "Import tokens", nil)
		return
	}
	req := p.req
	req.Body = bytes.NewReader(p.body)
	job, err := c.svc.ImportTokens(g.Request.Context(), req)
	if err != nil {
		c.fail(g, err)
		return
	}
	c.render(g, http.StatusOK, "import_report", "Import report", importData{Job: job, FileName: p.name})
}

// Profiles.

func (c *Console) profiles(g *gin.Context) {
	list, err := c.svc.ListProfiles(g.Request.Context())
	if err != nil {
		c.fail(g, err)
		return
	}
	c.render(g, http.StatusOK, "profiles", "Token profiles", list)
}

type profileFormData struct {
	New      bool
	P        appliance.Profile
	TTLHours int
	Devices  []string
	Methods  []string
	PINModes []string
	Bindings []string // ctf_binding choices
	Hashes   []string // otpauth hash choices
}

func (c *Console) profileFormPage(g *gin.Context, status int, isNew bool, p appliance.Profile, ttlHours int) {
	c.render(g, status, "profile_form", "Token profile", profileFormData{New: isNew, P: p, TTLHours: ttlHours,
		Devices: []string{appliance.DeviceAndroid, appliance.DeviceIOS, appliance.DeviceWindows, appliance.DeviceMacOS, appliance.DeviceGeneric,
			appliance.DeviceTOTPApp},
		Methods:  []string{appliance.DeliveryCTKIP, appliance.DeliveryFile, appliance.DeliveryCTF, appliance.DeliveryOTPAuth},
		PINModes: []string{appliance.PINModePINPad, appliance.PINModeFob, appliance.PINModeNone},
		Bindings: []string{appliance.CTFBindingPassword, appliance.CTFBindingDeviceID, appliance.CTFBindingNone},
		Hashes:   []string{"sha1", "sha256", "sha512"}})
}

func (c *Console) profileForm(g *gin.Context) {
	name := g.Param("name")
	if name == "" {
		c.profileFormPage(g, http.StatusOK, true, appliance.Profile{DeviceType: appliance.DeviceAndroid,
			DeliveryMethod: appliance.DeliveryCTKIP, Digits: 8, Interval: 60, PINMode: appliance.PINModePINPad}, 168)
		return
	}
	p, err := c.svc.GetProfile(g.Request.Context(), name)
	if err != nil {
		c.fail(g, err)
		return
	}
	c.profileFormPage(g, http.StatusOK, false, p, int(p.ActivationCodeTTL/time.Hour))
}

func (c *Console) profileSave(g *gin.Context) {
	name, isNew := g.Param("name"), g.Param("name") == ""
	if isNew {
		name = strings.TrimSpace(g.PostForm("name"))
	}
	digits, _ := strconv.Atoi(g.PostForm("digits"))
	interval, _ := strconv.Atoi(g.PostForm("interval"))
	hours, err := strconv.Atoi(g.PostForm("ttl_hours"))
	if err != nil || hours < 1 {
		hours = -1 // the Service reports the range
	}
	p := appliance.Profile{Name: name, DisplayName: g.PostForm("display_name"), DeviceType: g.PostForm("device_type"),
		DeliveryMethod: g.PostForm("delivery_method"), Digits: digits, Interval: interval, PINMode: g.PostForm("pin_mode"),
		ActivationCodeTTL: time.Duration(hours) * time.Hour, HelpText: g.PostForm("help_text")}
	// The form shows both selects whatever the method; each counts for its
	// own method only.
	if p.DeliveryMethod == appliance.DeliveryCTF {
		p.CTFBinding = g.PostForm("ctf_binding")
	}
	if p.DeliveryMethod == appliance.DeliveryOTPAuth {
		p.Hash = g.PostForm("hash")
	}
	if isNew {
		_, err = c.svc.CreateProfile(g.Request.Context(), p)
	} else {
		_, err = c.svc.UpdateProfile(g.Request.Context(), name, p)
	}
	if err != nil {
		c.formError(g, err, func(status int) { c.profileFormPage(g, status, isNew, p, hours) })
		return
	}
	c.sessions.setFlash(sessionOf(g), "Profile "+name+" saved.")
	redirect(g, "/profiles")
}

// Identity sources.

func (c *Console) sources(g *gin.Context) {
	var list []SourceStatus
	if c.src != nil {
		var err error
		if list, err = c.src.ListIdentitySources(g.Request.Context()); err != nil {
			c.fail(g, err)
			return
		}
	}
	c.render(g, http.StatusOK, "sources", "Identity sources", map[string]any{"Configured": c.src != nil, "List": list})
}

func (c *Console) runSource(g *gin.Context) {
	if c.src == nil {
		c.notFound(g)
		return
	}
	if err := c.src.RunSync(g.Request.Context(), g.Param("id")); err != nil {
		c.fail(g, err)
		return
	}
	c.sessions.setFlash(sessionOf(g), "Sync started.")
	redirect(g, "/sources")
}

// Audit.

type auditData struct {
	Actor, User, Serial, Action string
	Page                        appliance.AuditPage
	Next                        string
}

func (c *Console) audit(g *gin.Context) {
	d := auditData{Actor: strings.TrimSpace(g.Query("actor")), User: strings.TrimSpace(g.Query("user")),
		Serial: strings.TrimSpace(g.Query("serial")), Action: strings.TrimSpace(g.Query("action"))}
	q := appliance.AuditQuery{Actor: d.Actor, Serial: d.Serial, Action: d.Action, After: g.Query("after"), Limit: 100}
	if d.User != "" {
		// A login is friendlier than an id; fall back to the id itself.
		q.UserID = d.User
		if u, err := c.svc.FindUserByName(g.Request.Context(), d.User); err == nil {
			q.UserID = u.ID
		}
	}
	page, err := c.svc.ListAudit(g.Request.Context(), q)
	if err != nil {
		c.fail(g, err)
		return
	}
	d.Page = page
	if page.NextCursor != "" {
		d.Next = "?" + encodeQuery(map[string]string{"actor": d.Actor, "user": d.User, "serial": d.Serial,
			"action": d.Action, "after": page.NextCursor})
	}
	c.render(g, http.StatusOK, "audit", "Audit", d)
}

func encodeQuery(m map[string]string) string {
	v := make(map[string][]string, len(m))
	for k, x := range m {
		if x != "" {
			v[k] = []string{x}
		}
	}
	return url.Values(v).Encode()
}
