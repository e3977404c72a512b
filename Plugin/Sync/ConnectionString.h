#pragma once

#include <string>

namespace AzureDicom
{
// Replaces the passwords of a PostgreSQL connection string with "<redacted>", reading it as
// libpq does: the URI form ("postgresql://user:password@host/db", "?password=..." with
// percent-encoded keys) and the key/value form ("host=db password='a b' dbname=orthanc", with
// quotes and backslash escapes). A connection string that libpq would reject or read in more
// than one way keeps only its prefix and host. Other strings, such as a file path, come back as
// they are.
std::string RedactDatabase(const std::string& database);

// True for a postgresql:// URI whose host part contains '@', which libpq reads as part of the
// host although its author usually meant it as part of an unencoded password.
bool IsAmbiguousDatabaseUri(const std::string& database);

// Replaces each double-quoted part of a libpq error message with "<redacted>", unless the part
// is also in redactedDatabase. libpq quotes values of the connection string, such as a host or a
// malformed option, and those can contain part of a password.
// NOTE: text that libpq writes without quotes is kept as it is.
std::string RedactPostgreSqlMessage(const std::string& message,
                                    const std::string& redactedDatabase);
}  // namespace AzureDicom
