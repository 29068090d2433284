#pragma once
// What `splicer check` (and a reload) will say about a certificate entry's files, as config
// diagnostics naming the setting, its line and the file: missing or unreadable files, files
// that hold no PEM certificate or key, a key that does not match its certificate, a
// certificate not yet valid (errors); an expired certificate or a chain out of order (notices:
// the daemon still starts, as nginx does, and clients decide).
//
// `splicer check` (cli/check_command.cpp) passes where each setting sits; this file does no
// config parsing of its own.

#include <ctime>
#include <string>
#include <vector>

#include "splicer/config.h"
#include "tls/server_context.h"

namespace splicer::tls {

// A setting's path and line as the loader knows them ("https.certificates.[0].key", 12).
struct SettingPlace {
    std::string setting;
    int line = 0;
};

struct CertificatePlaces {
    SettingPlace certificate;
    SettingPlace key;
    SettingPlace ocsp_response;
};

// Every problem found, in file order (certificate, key, OCSP response); empty when all is
// well. `now` decides expiry (the tests pass a shifted clock).
// Every file is read through `read_file` (pem_files.h: the privileged parent's seam).
std::vector<config::Diagnostic> check_certificate_files(
    const CertificateFiles& files, const CertificatePlaces& places,
    std::time_t now = std::time(nullptr), const FileReader& read_file = read_file_bytes);

}  // namespace splicer::tls
