// Package console is the Security Console: the web pages administrators
// use on the admin listener, over the same appliance Service the admin API
// calls. It owns
//
//   - sign-in with admin accounts (name, password and, if enrolled, a
//     tokencode of a tokend token), in-memory sessions in __Host- cookies
//     (HttpOnly, Secure, SameSite=Strict) with idle and absolute timeouts,
//     and a per-session CSRF token checked on every POST;
//   - the pages of the seed procedure (quick search → user dashboard →
//     assign software tokens → select a CT-KIP profile → distribution with
//     activation code and QR code) and the Tokens, Import, Profiles,
//     Identity sources and Audit pages;
//   - role enforcement on every page and action with the admin API's role
//     sets (superadmin everything; helpdesk users and tokens; auditor
//     read-only plus audit);
//   - the response headers that keep it safe in a browser: a strict
//     Content-Security-Policy without inline script, frame-ancestors 'none',
//     no-store caching.
//
// Pages are server-rendered html/template (contextual escaping of every
// value, so a display name like <script> from LDAP renders as text), with
// templates, CSS and one small script embedded in the binary: no front-end
// build chain, and every form works without JavaScript.
//
// Sessions live in memory: restarting tokend signs every admin out.
package console
