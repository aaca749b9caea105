//! CMS (PKCS#7) detached signatures and AES-256-CBC image encryption, compatible with SWUpdate.
