package admin

import "github.com/gin-gonic/gin"

// hstsValue pins browsers to HTTPS for a year after their first visit, so
// a later http:// link or a downgrade on a hostile network cannot expose
// the console's cookie or an API token. No includeSubDomains: tokend does
// not own its host name's subdomains, and no preload.
const hstsValue = "max-age=31536000"

// strictTransportSecurity sends HSTS on every answer of the listener (API,
// console, SCIM, metrics, probes and errors) that went over TLS: RFC 6797
// has browsers ignore it over plain HTTP, where it would only mislead.
func strictTransportSecurity(c *gin.Context) {
	if c.Request.TLS != nil {
		c.Header("Strict-Transport-Security", hstsValue)
	}
	c.Next()
}
