#include "Azure/Redaction.h"

#include "Azure/HttpClient.h"

#include <json/value.h>
#include <json/writer.h>

#include <algorithm>

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

  std::sort(forms.begin(), forms.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
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
}  // namespace AzureDicom
