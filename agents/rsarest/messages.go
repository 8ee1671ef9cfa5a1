package rsarest

// The JSON documents of the RSA SecurID Authentication API (version 1.1),
// in RSA's field names. Fields tokend does not use are still decoded
// leniently: RSA clients send more than these (lang, sessionAttributes …).

// Context links the calls of one attempt.
type Context struct {
	AuthnAttemptID string `json:"authnAttemptId"`
	MessageID      string `json:"messageId"`
	InResponseTo   string `json:"inResponseTo"`
}

// CollectedInput is one value a user typed.
type CollectedInput struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// SubjectCredential is the input for one method.
type SubjectCredential struct {
	MethodID        string           `json:"methodId"`
	CollectedInputs []CollectedInput `json:"collectedInputs"`
}

// InitializeRequest is the body of POST /mfa/v1_1/authn/initialize.
type InitializeRequest struct {
	ClientID           string              `json:"clientId"`
	SubjectName        string              `json:"subjectName"`
	SubjectCredentials []SubjectCredential `json:"subjectCredentials"`
	Context            Context             `json:"context"`
	KeepAttempt        bool                `json:"keepAttempt"`
}

// VerifyRequest is the body of POST /mfa/v1_1/authn/verify.
type VerifyRequest struct {
	SubjectCredentials []SubjectCredential `json:"subjectCredentials"`
	Context            Context             `json:"context"`
}

// CancelRequest is the body of POST /mfa/v1_1/authn/cancel.
type CancelRequest struct {
	AuthnAttemptID string `json:"authnAttemptId"`
	Reason         string `json:"reason"`
}

// Response is the answer to every call.
type Response struct {
	Context                     Context                      `json:"context"`
	CredentialValidationResults []CredentialValidationResult `json:"credentialValidationResults"`
	AttemptResponseCode         string                       `json:"attemptResponseCode"`
	AttemptReasonCode           string                       `json:"attemptReasonCode"`
	ChallengeMethods            *ChallengeMethods            `json:"challengeMethods"`
	// Message explains an ERROR (bad request) for the agent's log.
	Message string `json:"message,omitempty"`
}

// CredentialValidationResult is the outcome for one method.
type CredentialValidationResult struct {
	MethodID           string   `json:"methodId"`
	MethodResponseCode string   `json:"methodResponseCode"`
	MethodReasonCode   *string  `json:"methodReasonCode"`
	AuthnAttributes    []string `json:"authnAttributes"`
}

// ChallengeMethods says what the agent must collect next.
type ChallengeMethods struct {
	Challenges []Challenge `json:"challenges"`
}

// Challenge is one set of required methods.
type Challenge struct {
	MethodSetID     *string          `json:"methodSetId"`
	RequiredMethods []RequiredMethod `json:"requiredMethods"`
}

// RequiredMethod is one method to answer.
type RequiredMethod struct {
	MethodID string    `json:"methodId"`
	Priority *int      `json:"priority"`
	Versions []Version `json:"versions"`
}

// Version describes how to collect a method's value.
type Version struct {
	VersionID        string   `json:"versionId"`
	MethodAttributes []string `json:"methodAttributes"`
	ValueRequired    bool     `json:"valueRequired"`
	ReferenceID      *string  `json:"referenceId"`
	Prompt           Prompt   `json:"prompt"`
}

// Prompt is what the agent shows the user.
type Prompt struct {
	PromptResourceID  string   `json:"promptResourceId"`
	DefaultText       string   `json:"defaultText"`
	FormatRegex       *string  `json:"formatRegex"`
	DefaultValue      *string  `json:"defaultValue"`
	ValueBeingDefined bool     `json:"valueBeingDefined"`
	Sensitive         bool     `json:"sensitive"`
	MinLength         *int     `json:"minLength"`
	MaxLength         *int     `json:"maxLength"`
	PromptArgs        []string `json:"promptArgs"`
}

// Method ids.
const (
	MethodSecurID       = "SECURID"
	MethodNextTokencode = "SECURID_NEXT_TOKENCODE"
	MethodNewPIN        = "SECURID_PIN"
)

// Attempt response codes.
const (
	CodeSuccess   = "SUCCESS"
	CodeFail      = "FAIL"
	CodeChallenge = "CHALLENGE"
	CodeError     = "ERROR"
)
