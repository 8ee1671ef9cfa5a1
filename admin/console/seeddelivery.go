package console

import (
	"html/template"
	"net/http"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// seedDeliveryData is the page of a distribution by token file, CTF link or
// otpauth URI. It is rendered once: nothing on it is stored.
type seedDeliveryData struct {
	User appliance.User
	D    appliance.SeedDelivery
	// File is the .sdtid as a data: URL download; FilePassword the
	// generated password, if one was generated.
	File         template.URL
	FilePassword string
	// Link is the CTF device link or the otpauth URI; Href the same as a
	// clickable URL for the schemes we build; Unbound that the link is
	// the seed in clear.
	Link    string
	Href    template.URL
	QR      template.URL
	Unbound bool
}

// deliverSeed distributes by file, ctf or otpauth when the profile says
// so, and reports whether it did.
func (c *Console) deliverSeed(g *gin.Context, u appliance.User, serial, profile string) bool {
	ctx := g.Request.Context()
	p, err := c.svc.GetProfile(ctx, profile)
	if err != nil {
		return false
	}
	if p.DeliveryMethod == appliance.DeliveryCTKIP {
		// CT-KIP derives the seed on the device: a password or device id
		// would protect nothing, so it is refused, not dropped.
		if g.PostForm("password") != "" || g.PostForm("device_id") != "" {
			g.Set("console.error", "A CT-KIP profile takes no password or device id: clear them, or choose a token file or CTF profile.")
			c.distributePage(g, http.StatusBadRequest)
			return true
		}
		return false
	}
	d, err := c.svc.DeliverSeed(ctx, serial, appliance.SeedDeliveryRequest{Profile: profile,
		Password: appliance.Secret(g.PostForm("password")), DeviceID: g.PostForm("device_id")})
	if err != nil {
		c.formError(g, err, func(status int) { c.distributePage(g, status) })
		return true
	}
	out := seedDeliveryData{User: u, D: d}
	switch d.Method {
	case appliance.DeliveryFile:
		// The file is handed out here, in this page, and is gone from
		// tokend afterwards.
		doc, err := c.svc.TakeTokenFile(ctx, serial)
		if err != nil {
			c.fail(g, err)
			return true
		}
		out.File = dataURL("application/xml", doc)
		clear(doc)
		out.FilePassword = d.FilePassword.Reveal()
	case appliance.DeliveryCTF:
		out.Link = d.DeviceURL.Reveal()
		out.Unbound = p.CTFBinding == appliance.CTFBindingNone
	case appliance.DeliveryOTPAuth:
		out.Link = d.OTPAuthURL.Reveal()
	}
	if out.Link != "" {
		var err error
		if out.QR, out.Href, err = linkQR(out.Link, seedLinkSchemes); err != nil {
			c.fail(g, err)
			return true
		}
	}
	c.render(g, http.StatusOK, "seeddelivery", "Token distribution", out)
	return true
}
