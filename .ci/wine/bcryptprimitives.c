/*
 * A stand-in for Windows' bcryptprimitives.dll, which Wine 8.0 lacks: Go
 * 1.22 and later call its ProcessPrng at start. This one fills the buffer
 * from advapi32's RtlGenRandom (SystemFunction036), Wine's own CSPRNG.
 * Built by .ci/wine/setup with mingw-w64; used only to run the Windows
 * tests under Wine.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		ULONG chunk = len > 0x7fffffff ? 0x7fffffff : (ULONG)len;
		if (!SystemFunction036(data, chunk))
			return FALSE;
		data += chunk;
		len -= chunk;
	}
	return TRUE;
}
