#pragma once

#include <string>
#include <vector>

namespace AzureDicom
{
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
}  // namespace AzureDicom
