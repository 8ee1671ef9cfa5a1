package admin

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// SeedDeliveryDTO is the answer of a distribution by token file or CTF
// string. It is shown once: tokend keeps only the sealed seed.
type SeedDeliveryDTO struct {
	Serial         string `json:"serial"`
	Profile        string `json:"profile"`
	DeliveryMethod string `json:"delivery_method"`
	// file: where the .sdtid is downloaded (once), the generated file
	// password when the request gave none, and the download deadline.
	FileURL      string     `json:"file_url,omitempty"`
	FilePassword string     `json:"file_password,omitempty"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
	// ctf: the string, the device link, and its QR code (drawn once).
	CTF       string `json:"ctf,omitempty"`
	DeviceURL string `json:"device_url,omitempty"`
	QRCodeURL string `json:"qr_code_url,omitempty"`
	// otpauth: the otpauth://totp/ URI for authenticator apps (and the
	// QR code of it, drawn once).
	OTPAuthURL string `json:"otpauth_url,omitempty"`
}

// ctfQRTTL bounds how long the QR code of a CTF link can be drawn.
const ctfQRTTL = 15 * time.Minute

// deliverSeed answers a distribution whose profile delivers by file, ctf
// or otpauth, and reports whether it did. CT-KIP profiles (and unknown ones, whose
// error Distribute reports) are left to the caller.
func (s *Server) deliverSeed(c *gin.Context, serial string, req distributeRequest) bool {
	p, err := s.svc.GetProfile(ctx(c), req.Profile)
	if err != nil {
		return false
	}
	if p.DeliveryMethod == appliance.DeliveryCTKIP {
		// CT-KIP derives the seed on the device: a password or device id
		// would protect nothing, so it is refused, not dropped.
		switch {
		case req.Password != "":
			s.WriteError(c, invalid("password", "not used by a ctkip profile"))
			return true
		case req.DeviceID != "":
			s.WriteError(c, invalid("device_id", "not used by a ctkip profile"))
			return true
		}
		return false
	}
	d, err := s.svc.DeliverSeed(ctx(c), serial, appliance.SeedDeliveryRequest{Profile: req.Profile,
		Password: req.Password, DeviceID: req.DeviceID})
	if err != nil {
		s.WriteError(c, err)
		return true
	}
	out := SeedDeliveryDTO{Serial: d.Serial, Profile: d.Profile, DeliveryMethod: d.Method}
	switch d.Method {
	case appliance.DeliveryFile:
		out.FileURL = APIPrefix + "/tokens/" + serial + "/distribution/token.sdtid"
		out.FilePassword = d.FilePassword.Reveal()
		out.ExpiresAt = optTime(d.ExpiresAt)
	case appliance.DeliveryCTF:
		out.CTF, out.DeviceURL = d.CTF.Reveal(), d.DeviceURL.Reveal()
		out.QRCodeURL = APIPrefix + "/tokens/" + serial + "/distribution/qr.png"
		s.qr.putOnce(serial, d.DeviceURL.Reveal(), s.now().Add(ctfQRTTL), s.now())
	case appliance.DeliveryOTPAuth:
		out.OTPAuthURL = d.OTPAuthURL.Reveal()
		out.QRCodeURL = APIPrefix + "/tokens/" + serial + "/distribution/qr.png"
		s.qr.putOnce(serial, d.OTPAuthURL.Reveal(), s.now().Add(ctfQRTTL), s.now())
	}
	c.Header("Cache-Control", "no-store")
	render(c, http.StatusCreated, out)
	return true
}

// downloadTokenFile answers the .sdtid of a file distribution, once.
func (s *Server) downloadTokenFile(c *gin.Context) {
	serial, err := serialParam(c)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	if err := s.svc.GuardAdminFactor(ctx(c), serial, "token.distribution.download"); err != nil {
		s.WriteError(c, err)
		return
	}
	doc, err := s.svc.TakeTokenFile(ctx(c), serial)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Header("Content-Disposition", `attachment; filename="`+serial+`.sdtid"`)
	c.Data(http.StatusOK, "application/xml", doc)
	clear(doc)
}

// drawOnce draws the QR code of a CTF link, which the cache has already
// dropped, if the token is still assigned.
func (s *Server) drawOnce(c *gin.Context, serial, link string) {
	t, err := s.svc.GetToken(ctx(c), serial)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	if t.UserID == "" {
		writeProblem(c, NewProblem(http.StatusNotFound, CodeQRUnavailable,
			"the QR code of this token's link is drawn once and is no longer available; distribute the token again"))
		return
	}
	png, err := qrPNG(link)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Data(http.StatusOK, "image/png", png)
}

// putOnce keeps a link whose QR code may be drawn once.
func (q *qrCache) putOnce(serial, link string, expires, now time.Time) {
	q.put(serial, link, expires, now)
	q.mu.Lock()
	defer q.mu.Unlock()
	if e, ok := q.entries[serial]; ok {
		e.once = true
		q.entries[serial] = e
	}
}

// takeOnce returns and drops a once-only link.
func (q *qrCache) takeOnce(serial string, now time.Time) (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.entries[serial]
	if !ok || !e.once {
		return "", false
	}
	delete(q.entries, serial)
	return e.link, now.Before(e.expires)
}
