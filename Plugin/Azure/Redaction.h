#pragma once

#include <string>
#include <vector>

namespace AzureDicom
{
struct HttpResponse;

const char* const REDACTED_TEXT = "[REDACTED]";

// Keeps printable ASCII and turns every run of other bytes (line breaks, tabs, UTF-8, control
// characters) into one space, so that a remote response cannot forge log lines. Cuts the text
// after maxChars characters, marking the cut with "...".
std::string MakePrintable(const std::string& text, size_t maxChars);

std::string ReplaceAll(std::string text, const std::string& needle, const std::string& by);

// The forms in which secrets can appear in a response or in a message built from it: as sent,
// URL-encoded, escaped in JSON, and after MakePrintable. Longest first, so that a longer form is
// replaced before a shorter form inside it.
std::vector<std::string> ListSecretForms(const std::vector<std::string>& secrets);

// Replaces each of the forms (from ListSecretForms) with REDACTED_TEXT.
std::string RedactSecrets(std::string text, const std::vector<std::string>& secretForms);

// Replaces the bearer token in the response's body and header values, and its parts of
// MIN_FRAGMENT_CHARS or more characters in the header values and in the body of an error. A
// gateway's or a proxy's error page may quote the request's headers, and the plugin keeps
// excerpts of error bodies in messages, the log and the outbox.
void RedactToken(HttpResponse& response, const std::string& token);

// The shortest part of a secret form that RedactSecretsAndFragments replaces.
const size_t MIN_FRAGMENT_CHARS = 10;

// Does what RedactSecrets does, then replaces every run of text made of MIN_FRAGMENT_CHARS or
// more characters that also appear in that order inside one form, such as the start of a secret
// that an error page quoted in part. For error bodies and messages: it hashes every position.
std::string RedactSecretsAndFragments(std::string text,
                                      const std::vector<std::string>& secretForms);
}  // namespace AzureDicom
