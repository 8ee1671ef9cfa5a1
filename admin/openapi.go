package admin

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// openAPIDoc is the OpenAPI 3.1 document of every route New mounts. It is
// written by hand; TestOpenAPIMatchesRouter keeps it in step with the
// router and the role table (x-tokend-roles).
//
//go:embed openapi.json
var openAPIDoc string

func (s *Server) openAPI(c *gin.Context) {
	c.Data(http.StatusOK, "application/json", []byte(openAPIDoc))
}
