// Builds multipart bodies from arbitrary parts and splits them again at the boundary: every
// part must come back byte for byte, in order, or AddPart must have rejected a part that
// contains the boundary.

#include "Azure/MultipartWriter.h"
#include "Common/Exception.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace
{
const size_t MAX_PARTS = 16;
const std::string PART_HEADERS = "Content-Type: application/dicom\r\n\r\n";

std::string GetBoundary(const AzureDicom::MultipartWriter& writer)
{
  const std::string type = writer.GetContentType();
  return type.substr(type.find("boundary=") + std::strlen("boundary="));
}


// Splits a body made by MultipartWriter into its parts; aborts on a malformed body.
std::vector<std::string> SplitBody(const std::string& body, const std::string& boundary)
{
  const std::string first = "--" + boundary + "\r\n" + PART_HEADERS;
  const std::string next = "\r\n--" + boundary + "\r\n" + PART_HEADERS;
  const std::string close = "\r\n--" + boundary + "--\r\n";
  if (body.compare(0, first.size(), first) != 0 || body.size() < first.size() + close.size() ||
      body.compare(body.size() - close.size(), close.size(), close) != 0)
  {
    std::abort();
  }

  std::vector<std::string> parts;
  size_t start = first.size();
  const size_t end = body.size() - close.size();
  for (;;)
  {
    const size_t delimiter = body.find(next, start);
    if (delimiter == std::string::npos || delimiter >= end)
    {
      parts.push_back(body.substr(start, end - start));
      return parts;
    }
    parts.push_back(body.substr(start, delimiter - start));
    start = delimiter + next.size();
  }
}
}  // namespace


extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
  // The input is split into parts at each 0xff byte.
  std::vector<std::string> parts(1);
  for (size_t i = 0; i < size && parts.size() <= MAX_PARTS; i++)
  {
    if (data[i] == 0xff)
    {
      parts.emplace_back();
    }
    else
    {
      parts.back().push_back(static_cast<char>(data[i]));
    }
  }

  AzureDicom::MultipartWriter writer;
  std::vector<std::string> added;
  for (const std::string& part : parts)
  {
    try
    {
      writer.AddPart(part);
      added.push_back(part);
    }
    catch (const AzureDicom::Exception&)
    {
      if (part.find("--" + GetBoundary(writer)) == std::string::npos)
      {
        std::abort();  // rejected a part without the boundary
      }
    }
  }

  if (added.empty())
  {
    return 0;
  }

  const std::string body = writer.Finish();
  if (body.size() != writer.GetBody().GetSize() || SplitBody(body, GetBoundary(writer)) != added)
  {
    std::abort();
  }
  return 0;
}
