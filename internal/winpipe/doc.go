// Package winpipe serves and dials Windows named pipes through go-winio:
// the first instance created exclusively (no squatting, also under Wine),
// remote clients refused, a DACL given by the caller, and clients at the
// Anonymous impersonation level unless asked otherwise. The pipe peer's
// identity is read by internal/peercred. Windows only; the package is
// empty elsewhere.
package winpipe
