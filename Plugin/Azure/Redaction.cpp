#include "Azure/Redaction.h"

#include "Azure/HttpClient.h"

#include <json/value.h>
#include <json/writer.h>

#include <algorithm>
#include <string_view>
#include <unordered_set>

namespace AzureDicom
{
std::string MakePrintable(const std::string& text, size_t maxChars)
{
  std::string excerpt;
  bool pendingSpace = false;

  for (const char c : text)
  {
    const bool printable = c > ' ' && c <= '~';
    if (!printable)
    {
      pendingSpace = !excerpt.empty();
      continue;
    }

    if (pendingSpace)
    {
      excerpt += ' ';
      pendingSpace = false;
    }

    excerpt += c;
    if (excerpt.size() >= maxChars)
    {
      return excerpt + "...";
    }
  }

  return excerpt;
}


std::string ReplaceAll(std::string text, const std::string& needle, const std::string& by)
{
  if (needle.empty())
  {
    return text;
  }

  for (size_t position = text.find(needle); position != std::string::npos;
       position = text.find(needle, position + by.size()))
  {
    text.replace(position, needle.size(), by);
  }

  return text;
}


std::vector<std::string> ListSecretForms(const std::vector<std::string>& secrets)
{
  std::vector<std::string> forms;
  for (const std::string& secret : secrets)
  {
    if (secret.empty())
    {
      continue;
    }

    std::string jsonEscaped = Json::valueToQuotedString(secret.c_str());
    jsonEscaped = jsonEscaped.substr(1, jsonEscaped.size() - 2);

    forms.insert(forms.end(), {secret, UrlEncode(secret), jsonEscaped,
                               MakePrintable(secret, secret.size() + 1)});
  }

  // Longest first, and each form once: a token has the same text in every form.
  std::sort(forms.begin(), forms.end(),
            [](const std::string& a, const std::string& b)
            { return a.size() != b.size() ? a.size() > b.size() : a < b; });
  forms.erase(std::unique(forms.begin(), forms.end()), forms.end());
  return forms;
}


std::string RedactSecrets(std::string text, const std::vector<std::string>& secretForms)
{
  for (const std::string& form : secretForms)
  {
    text = ReplaceAll(text, form, REDACTED_TEXT);
  }

  return text;
}


void RedactToken(HttpResponse& response, const std::string& token)
{
  if (token.empty())
  {
    return;
  }

  // An error page may also quote the token cut short or broken over lines. Its parts are looked
  // for in error bodies only: a successful STOW-RS response can be large, and it is the
  // service's own JSON.
  const std::vector<std::string> forms = ListSecretForms({token});
  const bool success = response.status >= 200 && response.status < 300;
  response.body = success ? RedactSecrets(std::move(response.body), forms)
                          : RedactSecretsAndFragments(std::move(response.body), forms);
  for (auto& header : response.headers)
  {
    header.second = RedactSecretsAndFragments(std::move(header.second), forms);
  }
}


std::string RedactSecretsAndFragments(std::string text, const std::vector<std::string>& secretForms)
{
  text = RedactSecrets(std::move(text), secretForms);
  if (text.size() < MIN_FRAGMENT_CHARS)
  {
    return text;
  }

  std::unordered_set<std::string_view> windows;
  for (const std::string& form : secretForms)
  {
    for (size_t start = 0; start + MIN_FRAGMENT_CHARS <= form.size(); start++)
    {
      windows.insert(std::string_view(form).substr(start, MIN_FRAGMENT_CHARS));
    }
  }

  if (windows.empty())
  {
    return text;
  }

  // Marks each character covered by a window that a form contains. Overlapping windows join
  // into one run, which is replaced once.
  std::vector<bool> covered(text.size(), false);
  const std::string_view view(text);
  for (size_t start = 0; start + MIN_FRAGMENT_CHARS <= text.size(); start++)
  {
    if (windows.count(view.substr(start, MIN_FRAGMENT_CHARS)) != 0)
    {
      std::fill(covered.begin() + start, covered.begin() + start + MIN_FRAGMENT_CHARS, true);
    }
  }

  std::string redacted;
  for (size_t i = 0; i < text.size(); i++)
  {
    if (!covered[i])
    {
      redacted += text[i];
    }
    else if (i == 0 || !covered[i - 1])
    {
      redacted += REDACTED_TEXT;
    }
  }

  return redacted;
}
}  // namespace AzureDicom
