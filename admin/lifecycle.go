package admin

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// Token lifecycle endpoints: replace (and end or cancel a replacement),
// lost / found, extend, delete. The rules are the Service's (appliance
// lifecycle.go); these handlers only bind and render.

type replaceRequest struct {
	Serial  string `json:"serial"`
	Profile string `json:"profile"`
	// Password and DeviceID: for file and ctf profiles, as in a
	// distribution.
	Password appliance.Secret `json:"password"`
	DeviceID string           `json:"device_id"`
}

// ReplacementDTO is a started replacement. Distribution (ctkip) or
// SeedDelivery (file, ctf, otpauth) is set when a profile was given, and
// is shown once.
type ReplacementDTO struct {
	Old          TokenDTO         `json:"old"`
	New          TokenDTO         `json:"new"`
	Distribution *DistributionDTO `json:"distribution,omitempty"`
	SeedDelivery *SeedDeliveryDTO `json:"seed_delivery,omitempty"`
}

type lostRequest struct {
	EmergencyAccess *emergencyAccessRequest `json:"emergency_access"`
}

// LostDTO is a token marked lost and the emergency access granted with it
// (shown once).
type LostDTO struct {
	Token           TokenDTO            `json:"token"`
	EmergencyAccess *EmergencyAccessDTO `json:"emergency_access,omitempty"`
}

type extendRequest struct {
	ExpiresAt string `json:"expires_at"`
}

func (s *Server) replaceToken(c *gin.Context) {
	serial, err := serialParam(c)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	var req replaceRequest
	if err := decodeJSON(c, &req); err != nil {
		s.WriteError(c, err)
		return
	}
	r, err := s.svc.ReplaceToken(ctx(c), serial, appliance.ReplaceRequest{Serial: req.Serial, Profile: req.Profile,
		Password: req.Password, DeviceID: req.DeviceID})
	if err != nil {
		s.WriteError(c, err)
		return
	}
	out := ReplacementDTO{Old: tokenDTO(r.Old), New: tokenDTO(r.New)}
	if d := r.Distribution; d != nil {
		s.qr.put(d.Serial, d.DeviceURL.Reveal(), d.ExpiresAt, s.now())
		out.Distribution = &DistributionDTO{Serial: d.Serial, Profile: d.Profile, CTKIPURL: d.CTKIPURL,
			ActivationCode: d.ActivationCode.Reveal(), ExpiresAt: d.ExpiresAt.UTC(), DeviceURL: d.DeviceURL.Reveal(),
			QRCodeURL: APIPrefix + "/tokens/" + d.Serial + "/distribution/qr.png"}
	}
	if d := r.SeedDelivery; d != nil {
		sd := s.seedDeliveryDTO(*d)
		out.SeedDelivery = &sd
	}
	c.Header("Cache-Control", "no-store")
	c.Header("Location", APIPrefix+"/tokens/"+r.New.Serial)
	render(c, http.StatusCreated, out)
}

// seedDeliveryDTO renders a file/CTF/otpauth delivery and keeps its link
// for one QR code, as a distribution does (seeddelivery.go).
func (s *Server) seedDeliveryDTO(d appliance.SeedDelivery) SeedDeliveryDTO {
	out := SeedDeliveryDTO{Serial: d.Serial, Profile: d.Profile, DeliveryMethod: d.Method}
	switch d.Method {
	case appliance.DeliveryFile:
		out.FileURL = APIPrefix + "/tokens/" + d.Serial + "/distribution/token.sdtid"
		out.FilePassword = d.FilePassword.Reveal()
		out.ExpiresAt = optTime(d.ExpiresAt)
	case appliance.DeliveryCTF:
		out.CTF, out.DeviceURL = d.CTF.Reveal(), d.DeviceURL.Reveal()
		out.QRCodeURL = APIPrefix + "/tokens/" + d.Serial + "/distribution/qr.png"
		s.qr.putOnce(d.Serial, d.DeviceURL.Reveal(), s.now().Add(ctfQRTTL), s.now())
	case appliance.DeliveryOTPAuth:
		out.OTPAuthURL = d.OTPAuthURL.Reveal()
		out.QRCodeURL = APIPrefix + "/tokens/" + d.Serial + "/distribution/qr.png"
		s.qr.putOnce(d.Serial, d.OTPAuthURL.Reveal(), s.now().Add(ctfQRTTL), s.now())
	}
	return out
}

// endReplacement completes (the old token is retired now) or cancels (the
// new token is given back) the pending replacement of the token.
func (s *Server) endReplacement(complete bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		serial, err := serialParam(c)
		if err != nil {
			s.WriteError(c, err)
			return
		}
		var newSerial string
		if t, err := s.svc.GetToken(ctx(c), serial); err == nil {
			newSerial = t.ReplacedBy
		}
		end := s.svc.CancelReplacement
		if complete {
			end = s.svc.CompleteReplacement
		}
		if err := end(ctx(c), serial); err != nil {
			s.WriteError(c, err)
			return
		}
		if complete {
			s.qr.drop(serial)
		} else if newSerial != "" {
			s.qr.drop(newSerial) // its code was voided with the assignment
		}
		c.Status(http.StatusNoContent)
	}
}

func (s *Server) markLost(c *gin.Context) {
	serial, err := serialParam(c)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	// The body is optional: without one, no emergency access.
	var req lostRequest
	if c.Request.ContentLength != 0 {
		if err := decodeJSON(c, &req); err != nil {
			s.WriteError(c, err)
			return
		}
	}
	var em *appliance.EmergencyRequest
	if ea := req.EmergencyAccess; ea != nil {
		lifetime, err := ea.lifetime()
		if err != nil {
			s.WriteError(c, err)
			return
		}
		em = &appliance.EmergencyRequest{Kind: ea.Kind, Count: ea.Count, Lifetime: lifetime}
	}
	// The outstanding code is voided with the loss: forget its QR code
	// whatever the outcome.
	s.qr.drop(serial)
	r, err := s.svc.MarkLost(ctx(c), serial, em)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	out := LostDTO{Token: tokenDTO(r.Token)}
	if r.Emergency != nil {
		ea := emergencyAccessDTO(*r.Emergency)
		out.EmergencyAccess = &ea
		c.Header("Cache-Control", "no-store")
	}
	render(c, http.StatusOK, out)
}

func (s *Server) markFound(c *gin.Context) {
	serial, err := serialParam(c)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	t, err := s.svc.MarkFound(ctx(c), serial)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, tokenDTO(t))
}

func (s *Server) extendToken(c *gin.Context) {
	serial, err := serialParam(c)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	var req extendRequest
	if err := decodeJSON(c, &req); err != nil {
		s.WriteError(c, err)
		return
	}
	var at time.Time
	if req.ExpiresAt != "" {
		if at, err = time.Parse(time.RFC3339, req.ExpiresAt); err != nil {
			s.WriteError(c, invalid("expires_at", "must be an RFC 3339 date-time such as 2027-06-30T00:00:00Z"))
			return
		}
	}
	t, err := s.svc.ExtendToken(ctx(c), serial, at)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, tokenDTO(t))
}

func (s *Server) deleteToken(c *gin.Context) {
	serial, err := serialParam(c)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	if err := s.svc.DeleteToken(ctx(c), serial); err != nil {
		s.WriteError(c, err)
		return
	}
	s.qr.drop(serial)
	c.Status(http.StatusNoContent)
}
