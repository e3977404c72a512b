#include "Sync/InstanceDigest.h"

#include "Common/Exception.h"
#include "Common/Md5.h"

#include <cctype>

namespace AzureDicom
{
namespace
{
constexpr size_t MD5_HEX_LENGTH = 32;


bool IsMd5(const std::string& text)
{
  if (text.size() != MD5_HEX_LENGTH)
  {
    return false;
  }
  for (char c : text)
  {
    if (!std::isxdigit(static_cast<unsigned char>(c)) ||
        std::isupper(static_cast<unsigned char>(c)))
    {
      return false;
    }
  }
  return true;
}


// Returns the digest that Orthanc stored for the file, or "" when it has none. Orthanc 1.10.1
// returns 404 for an attachment stored without MD5 (StoreMD5ForAttachments false).
std::string ReadStoredMd5(IOrthancGateway& orthanc, const std::string& orthancId)
{
  std::string answer;
  try
  {
    if (!orthanc.GetBinary(answer, "/instances/" + orthancId + "/attachments/dicom/md5"))
    {
      return "";
    }
  }
  catch (const Exception&)
  {
    // The digest is only an optimization, so a failed request falls back to hashing the file.
    return "";
  }

  while (!answer.empty() && std::isspace(static_cast<unsigned char>(answer.back())))
  {
    answer.pop_back();
  }
  return IsMd5(answer) ? answer : "";
}


std::string HashBytes(const char* data, size_t size)
{
  Md5 digest;
  digest.Update(data, size);
  return digest.Finish();
}
}  // namespace


std::string GetInstanceMd5(IOrthancGateway& orthanc, const std::string& orthancId,
                           const char* data, size_t size)
{
  if (size >= MD5_FROM_ORTHANC_MIN_BYTES)
  {
    const std::string stored = ReadStoredMd5(orthanc, orthancId);
    if (!stored.empty())
    {
      return stored;
    }
  }
  return HashBytes(data, size);
}


std::string GetInstanceMd5(IOrthancGateway& orthanc, const std::string& orthancId)
{
  const std::string stored = ReadStoredMd5(orthanc, orthancId);
  if (!stored.empty())
  {
    return stored;
  }

  Md5 digest;
  if (!orthanc.ReadBinary("/instances/" + orthancId + "/file",
                          [&digest](const char* data, size_t size) { digest.Update(data, size); }))
  {
    return "";
  }
  return digest.Finish();
}
}  // namespace AzureDicom
