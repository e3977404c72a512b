#include "Sync/ConnectionString.h"

#include "Sync/Database.h"

#include <cctype>
#include <optional>

namespace AzureDicom
{
namespace
{
const char* const kRedacted = "<redacted>";
const char* const kUriPrefixes[] = {"postgresql://", "postgres://"};


// The characters that libpq's isspace() skips between keyword/value pairs (C locale).
bool IsSpace(char c)
{
  return std::isspace(static_cast<unsigned char>(c)) != 0;
}


bool IsHexDigit(char c)
{
  return std::isxdigit(static_cast<unsigned char>(c)) != 0;
}


// Keywords whose value is a password. libpq's keywords are case-sensitive, but a keyword in
// another case is redacted too, since libpq's error for it quotes only the keyword.
bool IsSecretKeyword(const std::string& keyword)
{
  std::string lower;
  for (char c : keyword)
  {
    lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return lower == "password" || lower == "sslpassword";
}


// libpq expands a dbname that contains '=' or starts with a URI prefix into a whole connection
// string, which can itself contain a password.
bool IsExpandedDbname(const std::string& keyword, const std::string& value)
{
  if (keyword != "dbname")
  {
    return false;
  }
  for (const char* prefix : kUriPrefixes)
  {
    if (value.rfind(prefix, 0) == 0)
    {
      return true;
    }
  }
  return value.find('=') != std::string::npos;
}


// Decodes %XX sequences as libpq does for the keys and values of a URI. Returns nothing for an
// invalid sequence or %00, which libpq rejects.
std::optional<std::string> DecodePercent(const std::string& text)
{
  std::string decoded;
  for (size_t i = 0; i < text.size(); i++)
  {
    if (text[i] != '%')
    {
      decoded += text[i];
      continue;
    }
    if (i + 2 >= text.size() || !IsHexDigit(text[i + 1]) || !IsHexDigit(text[i + 2]))
    {
      return std::nullopt;
    }
    const char c = static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16));
    if (c == '\0')
    {
      return std::nullopt;
    }
    decoded += c;
    i += 2;
  }
  return decoded;
}


// Redacts a key/value connection string, reading it as libpq does: spaces
// between pairs and around '=', values in single quotes, and a backslash that escapes the next
// character in quoted and unquoted values. Returns nothing when libpq would reject the string.
std::optional<std::string> RedactKeywordValue(const std::string& text)
{
  std::string redacted;
  size_t i = 0;
  while (i < text.size())
  {
    const size_t pairStart = i;
    while (i < text.size() && IsSpace(text[i]))
    {
      i++;
    }
    if (i == text.size())
    {
      redacted += text.substr(pairStart);
      break;
    }

    const size_t keywordStart = i;
    while (i < text.size() && !IsSpace(text[i]) && text[i] != '=')
    {
      i++;
    }
    const std::string keyword = text.substr(keywordStart, i - keywordStart);
    while (i < text.size() && IsSpace(text[i]))
    {
      i++;
    }
    if (i == text.size() || text[i] != '=')
    {
      return std::nullopt;
    }
    i++;
    while (i < text.size() && IsSpace(text[i]))
    {
      i++;
    }

    const size_t valueStart = i;
    std::string value;
    if (i < text.size() && text[i] == '\'')
    {
      for (i++; i < text.size() && text[i] != '\''; i++)
      {
        if (text[i] == '\\' && i + 1 < text.size())
        {
          i++;
        }
        value += text[i];
      }
      if (i == text.size())
      {
        return std::nullopt;  // unterminated quoted string
      }
      i++;
    }
    else
    {
      for (; i < text.size() && !IsSpace(text[i]); i++)
      {
        if (text[i] == '\\' && i + 1 < text.size())
        {
          i++;
        }
        value += text[i];
      }
    }

    redacted += text.substr(pairStart, valueStart - pairStart);
    const bool isSecret = IsSecretKeyword(keyword) || IsExpandedDbname(keyword, value);
    redacted += isSecret ? kRedacted : text.substr(valueStart, i - valueStart);
  }
  return redacted;
}


// Redacts the query of a URI, whose keys and values libpq percent-decodes.
std::optional<std::string> RedactUriQuery(const std::string& query)
{
  std::string redacted;
  size_t start = 0;
  while (start <= query.size())
  {
    size_t end = query.find('&', start);
    end = (end == std::string::npos) ? query.size() : end;
    const std::string parameter = query.substr(start, end - start);

    const size_t equals = parameter.find('=');
    if (equals == std::string::npos || parameter.find('=', equals + 1) != std::string::npos)
    {
      return std::nullopt;
    }
    const std::optional<std::string> key = DecodePercent(parameter.substr(0, equals));
    const std::optional<std::string> value = DecodePercent(parameter.substr(equals + 1));
    if (!key || !value)
    {
      return std::nullopt;
    }

    redacted += (start == 0 ? "" : "&") + parameter.substr(0, equals + 1);
    const bool isSecret = IsSecretKeyword(*key) || IsExpandedDbname(*key, *value);
    redacted += isSecret ? kRedacted : parameter.substr(equals + 1);
    start = end + 1;
  }
  return redacted;
}


// Redacts a postgresql:// URI, splitting it as libpq does: the
// user information ends at the first '@' before any '/', and the password follows the first ':'
// in it. Returns nothing for a URI that libpq would read differently from what its author
// probably meant, such as an unencoded '@' in the password, or that libpq would reject.
std::optional<std::string> RedactUri(const std::string& uri, size_t authorityStart)
{
  std::string redacted = uri.substr(0, authorityStart);
  size_t i = uri.find_first_of("@/", authorityStart);
  size_t hostStart = authorityStart;
  if (i != std::string::npos && uri[i] == '@')
  {
    const std::string userInfo = uri.substr(authorityStart, i - authorityStart);
    if (userInfo.find('?') != std::string::npos)
    {
      return std::nullopt;
    }
    const size_t colon = userInfo.find(':');
    redacted += (colon == std::string::npos) ? userInfo : userInfo.substr(0, colon + 1) + kRedacted;
    redacted += "@";
    hostStart = i + 1;
  }

  const size_t hostEnd = uri.find_first_of("/?", hostStart);
  const std::string hosts = uri.substr(hostStart, hostEnd - hostStart);
  if (hosts.find('@') != std::string::npos)
  {
    return std::nullopt;
  }
  redacted += hosts;
  if (hostEnd == std::string::npos)
  {
    return redacted;
  }

  const size_t query = uri.find('?', hostEnd);
  redacted += uri.substr(hostEnd, query - hostEnd);
  if (query == std::string::npos)
  {
    return redacted;
  }

  const std::optional<std::string> redactedQuery = RedactUriQuery(uri.substr(query + 1));
  if (!redactedQuery)
  {
    return std::nullopt;
  }
  return redacted + "?" + *redactedQuery;
}


// Keeps the prefix and the host list that follows the last '@' of the authority, which is what
// the author of a URI meant as the host, and redacts everything else.
std::string RedactWholeUri(const std::string& uri, size_t authorityStart)
{
  size_t hostEnd = uri.find('/', authorityStart);
  const size_t at = uri.substr(authorityStart, hostEnd - authorityStart).rfind('@');
  const size_t hostStart = (at == std::string::npos) ? authorityStart : authorityStart + at + 1;
  hostEnd = uri.find_first_of("/?", hostStart);

  std::string redacted =
      uri.substr(0, authorityStart) + kRedacted + "@" + uri.substr(hostStart, hostEnd - hostStart);
  return hostEnd == std::string::npos ? redacted : redacted + "/" + kRedacted;
}
}  // namespace


std::string RedactDatabase(const std::string& database)
{
  for (const char* prefix : kUriPrefixes)
  {
    if (database.rfind(prefix, 0) == 0)
    {
      const size_t authorityStart = std::string(prefix).size();
      const std::optional<std::string> redacted = RedactUri(database, authorityStart);
      return redacted ? *redacted : RedactWholeUri(database, authorityStart);
    }
  }

  if (!IsPostgreSqlConnectionString(database))
  {
    return database;
  }
  const std::optional<std::string> redacted = RedactKeywordValue(database);
  return redacted ? *redacted : kRedacted;
}


bool IsAmbiguousDatabaseUri(const std::string& database)
{
  for (const char* prefix : kUriPrefixes)
  {
    if (database.rfind(prefix, 0) == 0)
    {
      const size_t authorityStart = std::string(prefix).size();
      const size_t at = database.find_first_of("@/", authorityStart);
      if (at == std::string::npos || database[at] != '@')
      {
        return false;
      }
      const size_t hostEnd = database.find_first_of("/?", at + 1);
      return database.substr(at + 1, hostEnd - at - 1).find('@') != std::string::npos;
    }
  }
  return false;
}


std::string RedactPostgreSqlMessage(const std::string& message, const std::string& redactedDatabase)
{
  std::string redacted;
  size_t i = 0;
  while (i < message.size())
  {
    const size_t open = message.find('"', i);
    const size_t close = (open == std::string::npos) ? open : message.find('"', open + 1);
    if (close == std::string::npos)
    {
      redacted += message.substr(i);
      break;
    }

    const std::string quoted = message.substr(open + 1, close - open - 1);
    const bool isShown = redactedDatabase.find(quoted) != std::string::npos;
    redacted += message.substr(i, open + 1 - i) + (isShown ? quoted : kRedacted) + "\"";
    i = close + 1;
  }
  return redacted;
}
}  // namespace AzureDicom
