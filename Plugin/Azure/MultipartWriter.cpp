#include "Azure/MultipartWriter.h"

#include "Common/Exception.h"

#include <openssl/rand.h>

#include <cstring>

namespace AzureDicom
{
namespace
{
const size_t BOUNDARY_RANDOM_BYTES = 16;  // 128 bits: a collision with instance data is negligible
const char PART_HEADERS[] = "Content-Type: application/dicom\r\n\r\n";
const char CRLF[] = "\r\n";
const char DASHES[] = "--";


std::string MakeRandomBoundary()
{
  unsigned char random[BOUNDARY_RANDOM_BYTES];
  if (RAND_bytes(random, sizeof(random)) != 1)
  {
    throw Exception(ErrorCode::InternalError,
                    "OpenSSL's RAND_bytes() failed to produce the multipart boundary of a STOW-RS "
                    "request");
  }

  static const char hexDigits[] = "0123456789abcdef";
  std::string boundary;
  boundary.reserve(2 * sizeof(random));
  for (unsigned char byte : random)
  {
    boundary.push_back(hexDigits[byte >> 4]);
    boundary.push_back(hexDigits[byte & 0x0f]);
  }

  return boundary;
}
}  // namespace


// A deferred part that checks, once loaded, that it does not contain the boundary.
class MultipartWriter::BoundaryCheckedPart final : public IDeferredBuffer
{
public:
  BoundaryCheckedPart(std::unique_ptr<IDeferredBuffer> inner, std::string dashBoundary,
                      size_t partNumber) :
      inner_(std::move(inner)), dashBoundary_(std::move(dashBoundary)), partNumber_(partNumber)
  {
  }

  uint64_t GetSize() const override
  {
    return inner_->GetSize();
  }

  std::unique_ptr<IBuffer> Load() noexcept override
  {
    std::unique_ptr<IBuffer> loaded = inner_->Load();
    if (loaded && memmem(loaded->GetData(), loaded->GetSize(), dashBoundary_.data(),
                         dashBoundary_.size()) != nullptr)
    {
      error_ = "part " + std::to_string(partNumber_) + " of a STOW-RS request (" +
               std::to_string(loaded->GetSize()) + " bytes) contains the multipart boundary " +
               dashBoundary_.substr(2) + ", expected random bytes never to match it";
      return nullptr;
    }
    return loaded;
  }

  const std::string& GetError() const
  {
    return error_;
  }

private:
  std::unique_ptr<IDeferredBuffer> inner_;
  std::string dashBoundary_;
  size_t partNumber_;
  std::string error_;
};


MultipartWriter::MultipartWriter() : boundary_(MakeRandomBoundary()) {}


MultipartWriter::~MultipartWriter() = default;


void MultipartWriter::AddText(std::string text)
{
  buffers_.push_back(std::make_unique<StringBuffer>(std::move(text)));
  body_.Add(buffers_.back()->GetData(), buffers_.back()->GetSize());
}


void MultipartWriter::AddPart(const std::string& dicom)
{
  AddPart(std::make_unique<StringBuffer>(dicom));
}


void MultipartWriter::AddPart(const char* data, size_t size)
{
  AddPart(std::make_unique<StringBuffer>(std::string(data, size)));
}


void MultipartWriter::AddPart(std::unique_ptr<IBuffer> dicom)
{
  if (closed_)
  {
    throw Exception(ErrorCode::InternalError,
                    "MultipartWriter::AddPart() was called after the body was closed");
  }

  // RFC 2046 delimits a part with CRLF "--" boundary. The stricter test for "--" boundary anywhere
  // in the part is enough: the boundary is hex digits, so no match can straddle the part's end and
  // the CRLF that this writer appends after it.
  const std::string dashBoundary = DASHES + boundary_;
  if (memmem(dicom->GetData(), dicom->GetSize(), dashBoundary.data(), dashBoundary.size()) !=
      nullptr)
  {
    throw Exception(ErrorCode::InternalError,
                    "part " + std::to_string(parts_ + 1) + " of a STOW-RS request (" +
                        std::to_string(dicom->GetSize()) +
                        " bytes) contains the multipart boundary " + boundary_ +
                        ", expected random bytes never to match it");
  }

  AddDelimiter();
  buffers_.push_back(std::move(dicom));
  body_.Add(buffers_.back()->GetData(), buffers_.back()->GetSize());
  parts_++;
}


void MultipartWriter::AddDeferredPart(std::unique_ptr<IDeferredBuffer> dicom)
{
  if (closed_)
  {
    throw Exception(ErrorCode::InternalError,
                    "MultipartWriter::AddDeferredPart() was called after the body was closed");
  }

  AddDelimiter();
  deferred_.push_back(
      std::make_unique<BoundaryCheckedPart>(std::move(dicom), DASHES + boundary_, parts_ + 1));
  body_.AddDeferred(*deferred_.back());
  parts_++;
}


std::string MultipartWriter::GetLoadError() const
{
  for (const std::unique_ptr<BoundaryCheckedPart>& part : deferred_)
  {
    if (!part->GetError().empty())
    {
      return part->GetError();
    }
  }
  return "";
}


void MultipartWriter::AddDelimiter()
{
  // The CRLF that ends the previous part goes with this part's delimiter.
  AddText(std::string(parts_ > 0 ? CRLF : "") + DASHES + boundary_ + CRLF + PART_HEADERS);
}


std::string MultipartWriter::GetContentType() const
{
  return "multipart/related; type=\"application/dicom\"; boundary=" + boundary_;
}


void MultipartWriter::Close()
{
  if (closed_)
  {
    return;
  }

  if (parts_ == 0)
  {
    throw Exception(ErrorCode::InternalError,
                    "MultipartWriter::Close() was called with no part, expected at least one "
                    "instance in a STOW-RS request");
  }

  AddText(std::string(CRLF) + DASHES + boundary_ + DASHES + CRLF);
  closed_ = true;
}


std::string MultipartWriter::Finish()
{
  Close();
  return body_.ToString();
}
}  // namespace AzureDicom
